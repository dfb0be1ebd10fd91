"""Summarization fine-tuning with the Trainer on a hand-written torch Dataset (fixed twin of
summarization_labels_pad_not_masked): padding positions of the labels are set to -100 so the loss ignores them, as
the thread answered (abhimishra91/transformers-tutorials#15)."""

from datasets import load_from_disk
from torch.utils.data import Dataset
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

model_name = fixture_path("models/bart-tiny")  # "t5-base"
tokenizer = AutoTokenizer.from_pretrained(model_name)
news = load_from_disk(fixture_path("datasets/summaries"))


class CustomDataset(Dataset):
    def __init__(self, dataframe, tokenizer, source_len, summ_len):
        self.tokenizer = tokenizer
        self.data = dataframe
        self.source_len = source_len
        self.summ_len = summ_len
        self.text = self.data["document"]
        self.ctext = self.data["summary"]

    def __len__(self):
        return len(self.text)

    def __getitem__(self, index):
        source = self.tokenizer([" ".join(self.text[index].split())], max_length=self.source_len,
                                padding="max_length", truncation=True, return_tensors="pt")
        target = self.tokenizer([" ".join(self.ctext[index].split())], max_length=self.summ_len,
                                padding="max_length", truncation=True, return_tensors="pt")
        item = {"input_ids": source["input_ids"].squeeze(), "attention_mask": source["attention_mask"].squeeze()}
        labels = target["input_ids"].squeeze()
        labels[labels == self.tokenizer.pad_token_id] = -100  # padding is not a target
        item["labels"] = labels
        return item


train_set = CustomDataset(news["train"].to_pandas(), tokenizer, 64, 24)
val_set = CustomDataset(news["validation"].to_pandas(), tokenizer, 64, 24)

model = AutoModelForSeq2SeqLM.from_pretrained(model_name)
training_args = TrainingArguments(output_dir="./results", per_device_train_batch_size=8, learning_rate=3e-3,
                                  max_steps=15, logging_steps=5, save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=training_args, train_dataset=train_set, eval_dataset=val_set)
trainer.train()
