"""Engine: the walk of the stages, the pipeline context it runs on, and the budget it runs within. Imports the
layers below it (targets, runtime, capture, facts, core) and loads the checks by name through the registry."""
