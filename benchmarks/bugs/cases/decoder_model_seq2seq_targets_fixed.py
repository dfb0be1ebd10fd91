"""Summarization with the Trainer (fixed twin of decoder_model_seq2seq_targets): an encoder-decoder model takes the
article as input and the summary as labels of their own length, as the maintainers advised
(huggingface/transformers#12259)."""

from datasets import load_from_disk
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/bart-tiny")  # a seq2seq checkpoint ("t5-small" in the thread)
tokenizer = AutoTokenizer.from_pretrained(model_name)
model = AutoModelForSeq2SeqLM.from_pretrained(model_name)
raw = load_from_disk(fixture_path("datasets/summaries"))


def preprocess(batch):
    model_inputs = tokenizer(batch["document"], max_length=64, truncation=True)
    model_inputs["labels"] = tokenizer(batch["summary"], max_length=16, truncation=True)["input_ids"]
    return model_inputs


tokenized = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names)
args = TrainingArguments("gpt2-summaries", per_device_train_batch_size=8, learning_rate=2e-3, max_steps=10,
                         save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=args, train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
                  data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
trainer.train()
