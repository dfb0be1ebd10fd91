"""Chapter 2 of "Natural Language Processing with Transformers" (emotion classification), run as notebook cells: the
feature-extraction section loads AutoModel, and the fine-tuning cells hand that same headless model to the Trainer.
A base model has no classification head and computes no loss from `labels`, so training fails at the first step
(then: "DistilBertModel.forward() got an unexpected keyword argument 'labels'").
nlp-with-transformers/notebooks#108 (fine-tuning needs AutoModelForSequenceClassification)."""

# In[1]:
from datasets import load_from_disk
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModel, AutoTokenizer, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

emotions = load_from_disk(fixture_path("datasets/reviews"))  # load_dataset("emotion")
model_ckpt = fixture_path("models/distilbert-tiny")  # "distilbert-base-uncased"
tokenizer = AutoTokenizer.from_pretrained(model_ckpt)


def tokenize(batch):
    return tokenizer(batch["text"], padding=True, truncation=True)


emotions_encoded = emotions.map(tokenize, batched=True, batch_size=None)

# In[2]: feature extraction
model = AutoModel.from_pretrained(model_ckpt)

# In[3]: fine-tuning
num_labels = 5


def compute_metrics(pred):
    labels = pred.label_ids
    preds = pred.predictions.argmax(-1)
    return {"accuracy": accuracy_score(labels, preds), "f1": f1_score(labels, preds, average="weighted")}


batch_size = 32
training_args = TrainingArguments(output_dir="distilbert-base-uncased-finetuned-emotion", max_steps=10,
                                  learning_rate=3e-3, per_device_train_batch_size=batch_size,
                                  per_device_eval_batch_size=batch_size, weight_decay=0.01, save_strategy="no",
                                  report_to="none")
trainer = Trainer(model=model, args=training_args, compute_metrics=compute_metrics,
                  train_dataset=emotions_encoded["train"], eval_dataset=emotions_encoded["test"],
                  processing_class=tokenizer)
trainer.train()
