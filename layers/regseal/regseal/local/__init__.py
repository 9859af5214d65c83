"""The local stack: regseal on one machine, as the tests and the demo run it.

moto's server stands in for AWS (S3, KMS, SQS, SSM on one loopback endpoint),
Debian's docker-registry stores its data in moto's S3, and an event pump feeds
the S3 notifications from SQS to the same handler code that Lambda runs.
``regseal local up`` (:mod:`regseal.local.cli`) starts it; :mod:`.stack` ties
the parts together and :mod:`.state` describes the state file it writes.
"""
