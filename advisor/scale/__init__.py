"""Scale-out: ``--executor ray`` runs the independent units of ``rank``, ``layers``, ``validate`` and
``bench`` as Ray tasks (:mod:`advisor.scale.executor`), one per model (:mod:`advisor.scale.rank`) or
per fine-tune run. The driver stays the only cache writer: tasks return arrays and rows, the driver
stores each unit in one transaction, so a rerun (serial or Ray) skips what is finished."""
