"""Summarization framed for the Trainer with a decoder-only model (DistilGPT2): the article is tokenized as
input_ids and the summary as `labels`, of a different length, as one would for an encoder-decoder. A causal LM
predicts one token per input position, so the loss fails with "Expected input batch_size (N) to match target
batch_size (M)". huggingface/transformers#12259 (use a seq2seq model, or put prompt and target in one sequence)."""

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/gpt2-tiny")  # "distilgpt2"
tokenizer = AutoTokenizer.from_pretrained(model_name)
tokenizer.pad_token = tokenizer.eos_token
model = AutoModelForCausalLM.from_pretrained(model_name)
raw = load_from_disk(fixture_path("datasets/summaries"))


def preprocess(batch):
    model_inputs = tokenizer(batch["document"], max_length=64, truncation=True)
    model_inputs["labels"] = tokenizer(batch["summary"], max_length=16, truncation=True)["input_ids"]
    return model_inputs


tokenized = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names)
args = TrainingArguments("gpt2-summaries", per_device_train_batch_size=8, learning_rate=2e-3, max_steps=10,
                         save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=args, train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
                  data_collator=DataCollatorForSeq2Seq(tokenizer))
trainer.train()
