"""regseal: seal container images in an S3-backed OCI registry.

The package is the domain model shared by the Lambda handlers in
``functions/``, the ``regseal`` CLI and the ``regseal-keyprovider`` command.
Modules are named for the concept they model: ``layout`` (the registry's S3
storage layout), ``ocicrypt`` (the encrypted layer format), ``jwe`` and
``kms`` (key wrapping), ``manifest`` (OCI and Docker manifests), ``policy``,
``events`` (storage event intake), ``storage`` (the S3 adapter) and ``seal``
(the operation that ties them together). ``cli`` is the command line and
``local`` the local stack (moto, a registry and an event pump on one machine).
"""

__version__ = "0.1.0"
