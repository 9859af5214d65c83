"""Test access to the moto KMS DIGEST fix, which lives in the product.

The fix is :mod:`regseal.local.motokms` (the local stack's moto server applies
it through :mod:`regseal.local.motoserver_main`); tests that sign TUF metadata
with KMS keys under in-process ``mock_aws`` wrap themselves in
:func:`kms_digest_signing`. The canary in tests/functional/test_tuf_moto_kms.py
shows why it is needed and fails once moto signs digests itself
(getmoto/moto#10202).
"""

from regseal.local.motokms import kms_digest_signing

__all__ = ["kms_digest_signing"]
