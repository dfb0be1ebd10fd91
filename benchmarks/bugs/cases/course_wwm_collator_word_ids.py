"""Chapter 7 of the Hugging Face course (fine-tuning a masked language model), run as notebook cells with the
whole-word-masking collator: it pops each feature's `word_ids`, but the Trainer has already removed that column
(the model's forward does not take it), so the first batch raises KeyError: 'word_ids'. Reported on the course
forum (https://discuss.huggingface.co/t/chapter-7-questions/11746/23), fixed in huggingface/course#22."""

# In[1]:
import collections

import numpy as np
from datasets import load_from_disk
from transformers import AutoModelForMaskedLM, AutoTokenizer, default_data_collator

from ftdoctor.fixtures import fixture_path

model_checkpoint = fixture_path("models/distilbert-tiny")  # "distilbert-base-uncased"
model = AutoModelForMaskedLM.from_pretrained(model_checkpoint)
tokenizer = AutoTokenizer.from_pretrained(model_checkpoint)
imdb_dataset = load_from_disk(fixture_path("datasets/corpus"))  # load_dataset("imdb")


# In[2]:
def tokenize_function(examples):
    result = tokenizer(examples["text"])
    if tokenizer.is_fast:
        result["word_ids"] = [result.word_ids(i) for i in range(len(result["input_ids"]))]
    return result


tokenized_datasets = imdb_dataset.map(tokenize_function, batched=True, remove_columns=["text"])
chunk_size = 32


def group_texts(examples):
    concatenated_examples = {k: sum(examples[k], []) for k in examples.keys()}
    total_length = len(concatenated_examples[list(examples.keys())[0]])
    total_length = (total_length // chunk_size) * chunk_size
    result = {k: [t[i: i + chunk_size] for i in range(0, total_length, chunk_size)]
              for k, t in concatenated_examples.items()}
    result["labels"] = result["input_ids"].copy()
    return result


lm_datasets = tokenized_datasets.map(group_texts, batched=True)

# In[3]:
wwm_probability = 0.2


def whole_word_masking_data_collator(features):
    for feature in features:
        word_ids = feature.pop("word_ids")
        # Create a map between words and corresponding token indices
        mapping = collections.defaultdict(list)
        current_word_index = -1
        current_word = None
        for idx, word_id in enumerate(word_ids):
            if word_id is not None:
                if word_id != current_word:
                    current_word = word_id
                    current_word_index += 1
                mapping[current_word_index].append(idx)
        # Randomly mask words
        mask = np.random.binomial(1, wwm_probability, (len(mapping),))
        input_ids = feature["input_ids"]
        labels = feature["labels"]
        new_labels = [-100] * len(labels)
        for word_id in np.where(mask)[0]:
            word_id = word_id.item()
            for idx in mapping[word_id]:
                new_labels[idx] = labels[idx]
                input_ids[idx] = tokenizer.mask_token_id
        feature["labels"] = new_labels
    return default_data_collator(features)


# In[4]:
from transformers import Trainer, TrainingArguments

batch_size = 16
training_args = TrainingArguments(
    output_dir="distilbert-finetuned-imdb",
    eval_strategy="epoch",
    learning_rate=3e-3,
    weight_decay=0.01,
    per_device_train_batch_size=batch_size,
    per_device_eval_batch_size=batch_size,
    max_steps=10,
    save_strategy="no",
    logging_steps=5,
    report_to="none",
)
trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=lm_datasets["train"],
    eval_dataset=lm_datasets["validation"],
    data_collator=whole_word_masking_data_collator,
)
trainer.train()
