"""Training: ``vitdeca train`` (coarse, then detail stage, as DECA), resumable and data-parallel.

Modules: ``config`` (TrainConfig), ``run`` (``run_training``: what the CLI calls), ``trainer`` (the loop),
``objective`` (the loss registry), ``data`` (identity-grouped, resumable batches), ``checkpoint``,
``distributed`` (torchrun/DDP helpers), ``logging`` (CSV, TensorBoard, progress), ``plots``
(``plot-curves``). The loss functions themselves live in :mod:`vitdeca.losses`. See docs/training.md.
"""
