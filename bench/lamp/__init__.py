"""The personalization benchmark: every method of the three papers behind Myna, on the same
base model, users and splits, through Myna's own code paths.

    python -m bench lamp [--quick] [--tasks LaMP_4,LaMP_7] [--lamp QUESTIONS OUTPUTS] [--ray ADDRESS]

Its modules, in the order data flows through them (each imports only those before it):

- `plan`: what a run does (users, questions, budgets), and which methods it compares;
- `cache`: every stage's result saved as it is computed, so a run resumes where it stopped;
- `records`: what the stages make, typed (an adapter, a user's merges, a method's answers);
- `workspace`: one run's shared state (engine, torch base, users' stores) and its stages:
  stores, adapters, merges, answers; `models` holds what each user's stages made;
- `scores`: task metrics, bootstrap intervals, AUROC and rank statistics;
- `stages`: one task's per-user stages (own adapter, merges, adapter variants, answers), each
  user's a unit of work run here or, with `--ray ADDRESS`, as a Ray task;
- `amounts`, `privacy`, `diagnose`: the stages that measure beyond the main table;
- `summary`: the numbers of a task, from its predictions and records;
- `report`: markdown and plots of those numbers, nothing else;
- `run`: the whole run, and `main` for `python -m bench lamp`.

Results go to bench/results/lamp[-quick]/: results.json, results.md, plots/*.png.
"""
