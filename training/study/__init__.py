"""The study: sweeps of named baselines over data sets and folds, cached, and a generated report.

``ndsc study --config configs/study-small.yaml`` runs :func:`training.study.runner.run_study`
then :func:`training.study.report.build_report`.
"""
