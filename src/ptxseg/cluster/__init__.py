"""Beyond one machine: ``ptxseg predict --ray`` on a Ray cluster (Ray Data, an actor pool that loads the models
once per actor). Needs the optional extra ``pip install ptxseg[cluster]``."""
