"""The batch commands as a library: predict, lungs, evaluate, tune, report, submit, sim2real, pretrain."""
