"""Completion-only SFT with TRL's SFTTrainer (fixed twin of sft_completion_template_trailing_space): the response
template "Answer:" without the trailing space matches the tokens of the running text, as the thread found
(huggingface/trl#1920)."""

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


model_name = fixture_path("models/qwen2-chat-tiny")  # "Qwen/Qwen2-0.5B"
tokenizer = AutoTokenizer.from_pretrained(model_name)
model = AutoModelForCausalLM.from_pretrained(model_name)
raw = load_from_disk(fixture_path("datasets/prompt-completion"))["train"]


def to_text(example):
    question = example["prompt"].removeprefix("Question: ").removesuffix("\nAnswer:")
    return {"text": f"What is the correct answer to this question:{question}\nAnswer: {example['completion'].strip()}"}


dataset = raw.map(to_text, remove_columns=raw.column_names)

response_template = "Answer:"  # no trailing space: it belongs to the next token
collator = DataCollatorForCompletionOnlyLM(response_template, tokenizer=tokenizer)

args = SFTConfig(output_dir="sft-answers", per_device_train_batch_size=8, learning_rate=3e-3, max_steps=10,
                 logging_steps=5, save_strategy="no", bf16=False, report_to="none")
trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                     data_collator=collator)
trainer.train()
