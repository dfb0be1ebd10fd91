"""A software-mention NER notebook (BertForTokenClassification, a hand-written loop): when a word is split into
word pieces its label is repeated on every piece, so a "B-software" word becomes several entity starts, and the
model learns to begin entities inside words. Training runs; entity-level scores are wrong.
chanzuckerberg/software-mention-extraction#2."""

# In[1]:
import torch
from datasets import load_from_disk
from torch.utils.data import DataLoader, TensorDataset
from transformers import BertForTokenClassification, BertTokenizer

from ftdoctor.fixtures import fixture_path

ner = load_from_disk(fixture_path("datasets/ner"))["train"]
tag_values = ner.features["ner_tags"].feature.names
tag2idx = {t: i for i, t in enumerate(tag_values)}
sentences = [row["tokens"] for row in ner]
text_labels = [[tag_values[t] for t in row["ner_tags"]] for row in ner]

tokenizer = BertTokenizer.from_pretrained(fixture_path("models/bert-tiny"), do_lower_case=False)


# In[2]:
def tokenize_label_sentence(sentence, text_labels):
    tokenized_sentence = []
    labels = []
    for word, label in zip(sentence, text_labels):
        tokenized_word = tokenizer.tokenize(word)
        n_subwords = len(tokenized_word)
        tokenized_sentence.extend(tokenized_word)
        labels.extend([label] * n_subwords)
    return tokenized_sentence, labels


tokenized_texts_and_labels = [tokenize_label_sentence(s, l) for s, l in zip(sentences, text_labels)]
MAX_LEN = 48


def pad(seq, value):
    return (seq + [value] * MAX_LEN)[:MAX_LEN]


input_ids = torch.tensor([pad(tokenizer.convert_tokens_to_ids(t), 0) for t, _ in tokenized_texts_and_labels])
tags = torch.tensor([pad([tag2idx[l] for l in labels], -100) for _, labels in tokenized_texts_and_labels])
attention_masks = (input_ids != 0).long()
train_dataloader = DataLoader(TensorDataset(input_ids, attention_masks, tags), batch_size=16, shuffle=True)

# In[3]:
model = BertForTokenClassification.from_pretrained(fixture_path("models/bert-tiny"), num_labels=len(tag2idx))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
for epoch in range(2):
    model.train()
    for b_input_ids, b_input_mask, b_labels in train_dataloader:
        model.zero_grad()
        outputs = model(b_input_ids, token_type_ids=None, attention_mask=b_input_mask, labels=b_labels)
        outputs.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
    print(f"epoch {epoch}: loss {outputs.loss.item():.4f}")
