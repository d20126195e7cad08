"""Fine-tune the small classifier: load labelled data, train, evaluate and write a model card.

``data`` loads, checks, splits and hashes labelled examples; ``config`` holds the settings and result types;
``trainer`` runs the one training loop; ``metrics`` holds the pure evaluation functions; ``card`` writes
``model_card.json`` and ``MODEL_CARD.md``. Import the submodules directly: only ``trainer`` imports torch.
"""
