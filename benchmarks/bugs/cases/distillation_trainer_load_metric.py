"""Knowledge distillation with a custom Trainer (a teacher's soft targets mixed into the student's loss), as in
"LLMs in Production" listing 5.4, importing load_metric from datasets: datasets 3.0 removed it, so the script stops
at the import. IMJONEZZ/LLMs-in-Production#3 (evaluate.load replaces it)."""

import numpy as np
import torch
import torch.nn.functional as F
from datasets import load_from_disk, load_metric
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

from ftdoctor.fixtures import fixture_path

teacher_id = fixture_path("models/bert-tiny")  # a fine-tuned BERT teacher
student_id = fixture_path("models/distilbert-tiny")  # "distilbert-base-uncased"
tokenizer = AutoTokenizer.from_pretrained(teacher_id)
dataset = load_from_disk(fixture_path("datasets/mrpc"))  # load_dataset("glue", "mrpc")
dataset = dataset.map(lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True, padding="max_length",
                                          max_length=64), batched=True, remove_columns=["sentence1", "sentence2", "idx"])
dataset = dataset.rename_column("label", "labels")
metric = load_metric(fixture_path("metrics/accuracy"))  # load_metric("accuracy")

teacher = AutoModelForSequenceClassification.from_pretrained(teacher_id, num_labels=2).eval()
student = AutoModelForSequenceClassification.from_pretrained(student_id, num_labels=2)


class DistillationTrainer(Trainer):
    def __init__(self, *args, teacher_model=None, alpha=0.5, temperature=2.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher, self.alpha, self.temperature = teacher_model, alpha, temperature

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs_student = model(**inputs)
        with torch.no_grad():
            outputs_teacher = self.teacher(**inputs)
        loss_kd = F.kl_div(F.log_softmax(outputs_student.logits / self.temperature, dim=-1),
                           F.softmax(outputs_teacher.logits / self.temperature, dim=-1),
                           reduction="batchmean") * self.temperature ** 2
        loss = self.alpha * outputs_student.loss + (1.0 - self.alpha) * loss_kd
        return (loss, outputs_student) if return_outputs else loss


def compute_metrics(eval_pred):
    predictions, labels = eval_pred
    return metric.compute(predictions=np.argmax(predictions, axis=1), references=labels)


args = TrainingArguments("distilled-student", per_device_train_batch_size=16, learning_rate=3e-3, max_steps=10,
                         save_strategy="no", report_to="none")
trainer = DistillationTrainer(student, args, teacher_model=teacher, train_dataset=dataset["train"],
                              eval_dataset=dataset["validation"], compute_metrics=compute_metrics)
trainer.train()
