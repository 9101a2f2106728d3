"""The training engine: ``ptxseg train`` (:func:`ptxseg.train.engine.train`) and its parts."""
