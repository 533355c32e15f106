"""The agent: learns from annotators' corrections, proposes prompt edits, and lets a human accept them.
Nothing that serving needs lives here; it reads the store and decides through ``service.predictor`` like ``/predict``.

Data flow: webhook -> ``hooks`` (queued on one background worker) -> ``corrections`` -> ``loop.refine``
(``strategies`` make candidates from the examples side of the split, ``evaluate`` scores them against the
active prompt on the validation side) -> a pending ``Proposal`` -> ``review`` -> the active prompt version.
``simulate`` runs the same loop offline against a labeled file.
"""
