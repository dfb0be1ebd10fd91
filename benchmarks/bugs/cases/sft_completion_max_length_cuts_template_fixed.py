"""Completion-only SFT with TRL's SFTTrainer and DataCollatorForCompletionOnlyLM (fixed twin of
sft_completion_max_length_cuts_template): max_seq_length is raised above the length of the rows, so the response
template and the answer survive truncation and are trained (huggingface/trl#613)."""

import warnings

import numpy as np
from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling
from trl import SFTConfig, SFTTrainer

from ftdoctor.fixtures import fixture_path


class DataCollatorForCompletionOnlyLM(DataCollatorForLanguageModeling):
    """Labels are -100 up to the end of the response template (trl.DataCollatorForCompletionOnlyLM, TRL <= 0.19).

    It builds the labels itself from input_ids, as it did when SFTTrainer tokenized rows without a labels column;
    the labels column current SFTTrainer adds is dropped here.
    """

    def __init__(self, response_template, *args, mlm=False, ignore_index=-100, **kwargs):
        super().__init__(*args, mlm=mlm, **kwargs)
        self.response_template = response_template
        self.response_token_ids = self.tokenizer.encode(response_template, add_special_tokens=False)
        self.ignore_index = ignore_index

    def torch_call(self, examples):
        examples = [{k: v for k, v in example.items() if k != "labels"} for example in examples]
        batch = super().torch_call(examples)
        for i in range(len(examples)):
            start = None
            for idx in np.where(batch["labels"][i] == self.response_token_ids[0])[0]:
                if self.response_token_ids == batch["labels"][i][idx: idx + len(self.response_token_ids)].tolist():
                    start = idx
            if start is None:
                warnings.warn(f"Could not find response key `{self.response_template}` in the following instance: "
                              f"{self.tokenizer.decode(batch['input_ids'][i])} This instance will be ignored in loss "
                              "calculation. Note, if this happens often, consider increasing the `max_seq_length`.")
                batch["labels"][i, :] = self.ignore_index
            else:
                batch["labels"][i, : start + len(self.response_token_ids)] = self.ignore_index
        return batch


model_name = fixture_path("models/qwen2-chat-tiny")  # "meta-llama/Llama-2-7b-hf"
tokenizer = AutoTokenizer.from_pretrained(model_name)
model = AutoModelForCausalLM.from_pretrained(model_name)
raw = load_from_disk(fixture_path("datasets/prompt-completion"))["train"]
passages = load_from_disk(fixture_path("datasets/corpus"))["train"]["text"]


def to_alpaca(example, idx):
    question = example["prompt"].removeprefix("Question: ").removesuffix("\nAnswer:")
    passage = " ".join(passages[4 * idx: 4 * idx + 4])
    return {"text": f"### Instruction:\nRead the passage, then answer the question.\n\n### Input:\n{passage}\n"
                    f"{question}\n\n### Response:\n{example['completion'].strip()}"}


dataset = raw.map(to_alpaca, with_indices=True, remove_columns=raw.column_names)

response_template = "### Response:"
collator = DataCollatorForCompletionOnlyLM(response_template, tokenizer=tokenizer)

args = SFTConfig(output_dir="sft-alpaca", max_length=256, per_device_train_batch_size=8, learning_rate=3e-3,
                 max_steps=10, logging_steps=5, save_strategy="no", bf16=False, report_to="none")
trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                     data_collator=collator)
trainer.train()
