"""`python -m tara_batch.train.triplets ...` = `tara-batch make-triplets ...`."""

from tara_batch.train.triplets.command import main

raise SystemExit(main())
