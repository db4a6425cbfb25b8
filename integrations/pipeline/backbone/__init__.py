"""The demo's backbone: a small SAM-architecture model pretrained on crisp shapes, shipped with
the package (`shipped`, ``weights/``), cached or pretrained now (`demo`), with the settings that
shape it (`pretrain_settings`) and the ``ua-sam pretrain-backbone`` command (`pretrain_cli`)."""
