"""The bar a fine-tuned model must clear: TF-IDF (word 1-2 grams) + logistic regression on the same split.

It trains in about a second, so every `modcascade train` run reports it next to the model's own validation
metrics (and in the model card): a model that does not clearly beat it is not worth serving.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.training.data import Example
from pipeline.training.metrics import Evaluation, evaluate

METHOD = "tfidf(word 1-2 grams, sublinear tf) + logistic regression (balanced class weights)"


def tfidf_baseline(train: Sequence[Example], val: Sequence[Example], labels: Sequence[str]) -> Evaluation:
    """Fit on ``train``, evaluate on ``val``; probabilities are ordered like ``labels``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    features = vectorizer.fit_transform([e.text for e in train])
    model = LogisticRegression(max_iter=2000, class_weight="balanced")
    model.fit(features, [e.label for e in train])
    raw = model.predict_proba(vectorizer.transform([e.text for e in val]))
    column = {label: i for i, label in enumerate(model.classes_)}
    probs = np.zeros((len(val), len(labels)))
    for j, label in enumerate(labels):
        if label in column:  # a label absent from training gets probability 0
            probs[:, j] = raw[:, column[label]]
    index = {label: i for i, label in enumerate(labels)}
    return evaluate(probs, [index[e.label] for e in val], list(labels))
