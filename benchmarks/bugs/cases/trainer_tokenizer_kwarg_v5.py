"""Term typing as sequence-pair classification with the Trainer (OntoLearner's RWTH-DBIS learner), still passing
tokenizer= to Trainer: transformers 5 removed that argument (processing_class replaces it), so building the trainer
fails with "Trainer.__init__() got an unexpected keyword argument 'tokenizer'". sciknoworg/OntoLearner#347."""

from datasets import Dataset, load_from_disk
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from ftdoctor.fixtures import fixture_path


class RWTHDBISTermTyper:
    def __init__(self, model_name):
        self.tokenizer = AutoTokenizer.from_pretrained(model_name)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_name, num_labels=2)

    def fit(self, pairs, labels, output_dir="term-typing"):
        dataset = Dataset.from_dict({"term": [p[0] for p in pairs], "type": [p[1] for p in pairs], "label": labels})
        tokenized_dataset = dataset.map(lambda b: self.tokenizer(b["term"], b["type"], truncation=True),
                                        batched=True, remove_columns=["term", "type"]).train_test_split(0.1, seed=0)
        data_collator = DataCollatorWithPadding(self.tokenizer)
        training_args = TrainingArguments(output_dir=output_dir, per_device_train_batch_size=16, learning_rate=3e-3,
                                          max_steps=10, save_strategy="no", report_to="none")
        trainer = Trainer(
            model=self.model,
            args=training_args,
            train_dataset=tokenized_dataset["train"],
            tokenizer=self.tokenizer,
            data_collator=data_collator,
        )
        trainer.train()


rows = load_from_disk(fixture_path("datasets/mrpc"))["train"]  # (term, candidate type, is-a) pairs stand in here
learner = RWTHDBISTermTyper(fixture_path("models/bert-tiny"))
learner.fit(list(zip(rows["sentence1"], rows["sentence2"])), list(rows["label"]))
