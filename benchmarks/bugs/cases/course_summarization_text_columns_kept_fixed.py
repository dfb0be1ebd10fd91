"""Chapter 7 of the Hugging Face course, summarization with Seq2SeqTrainer (fixed twin of
course_summarization_text_columns_kept): the raw text columns are removed after tokenizing, as the course does
(tokenized_datasets.remove_columns(...), huggingface/transformers#15505)."""

# In[1]:
from datasets import load_from_disk
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from ftdoctor.fixtures import fixture_path

model_checkpoint = fixture_path("models/bart-tiny")  # "google/mt5-small"
books_dataset = load_from_disk(fixture_path("datasets/summaries"))  # amazon reviews: review_body, review_title
tokenizer = AutoTokenizer.from_pretrained(model_checkpoint)
max_input_length = 64
max_target_length = 16


# In[2]:
def preprocess_function(examples):
    model_inputs = tokenizer(examples["document"], max_length=max_input_length, truncation=True)
    labels = tokenizer(examples["summary"], max_length=max_target_length, truncation=True)
    model_inputs["labels"] = labels["input_ids"]
    return model_inputs


tokenized_datasets = books_dataset.map(preprocess_function, batched=True)
tokenized_datasets = tokenized_datasets.remove_columns(books_dataset["train"].column_names)

# In[3]:
model = AutoModelForSeq2SeqLM.from_pretrained(model_checkpoint)
batch_size = 8
args = Seq2SeqTrainingArguments(output_dir="mt5-small-finetuned-amazon-en-es", learning_rate=3e-3,
                                per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
                                weight_decay=0.01, max_steps=10, save_strategy="no", report_to="none",
                                remove_unused_columns=False)
data_collator = DataCollatorForSeq2Seq(tokenizer, model=model)

# In[4]:
trainer = Seq2SeqTrainer(model, args, train_dataset=tokenized_datasets["train"],
                         eval_dataset=tokenized_datasets["validation"], data_collator=data_collator,
                         processing_class=tokenizer)
trainer.train()
