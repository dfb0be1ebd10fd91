"""Further training of BERT on a domain text file with the Trainer, following the "train a language model" blog
post, but loading BertForSequenceClassification: DataCollatorForLanguageModeling makes one label per token, the
classifier expects one per text, and the loss fails with "Expected input batch_size (8) to match target batch_size
(1024)". huggingface/transformers#6452 (a masked-LM head is needed: BertForMaskedLM)."""

from datasets import load_dataset, load_from_disk
from transformers import (
    BertForSequenceClassification,
    BertTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path

tokenizer = BertTokenizer.from_pretrained(fixture_path("models/bert-tiny"))  # "bert-base-uncased"
model = BertForSequenceClassification.from_pretrained(fixture_path("models/bert-tiny"))

# MyFile.txt of the report: one text per line
with open("MyFile.txt", "w") as f:
    f.write("\n".join(load_from_disk(fixture_path("datasets/corpus"))["train"]["text"]))
dataset = load_dataset("text", data_files="MyFile.txt")["train"]
dataset = dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True,
                      remove_columns=["text"])

data_collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=True, mlm_probability=0.15)
training_args = TrainingArguments(output_dir="./EsperBERTo", per_device_train_batch_size=8, max_steps=10,
                                  learning_rate=3e-3, save_strategy="no", report_to="none")
trainer = Trainer(model=model, args=training_args, data_collator=data_collator, train_dataset=dataset)
trainer.train()
