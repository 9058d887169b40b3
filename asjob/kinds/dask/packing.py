"""What travels to a Dask worker with a call: the call itself, and the caller's log levels.

Functions travel by reference, as for the ``process`` kind (the workers import them), except
what lives in the caller's ``__main__``: a remote worker has no copy of the caller's script, so
those travel by value with cloudpickle, as Dask sends them. What cannot travel either way fails
here, at the call, with the ``TypeError`` naming the culprit.

The payload crosses a network to the scheduler and a worker, so it is pickled for
:attr:`~asjob.worker.payload.Channel.NETWORK`: a context in it keeps no live credential object
(a client secret would travel in clear), only references and the tokens it brokers.
"""

from __future__ import annotations

import pickle

import cloudpickle

from ...call import Call, function_name
from ...worker.payload import Channel, dumps_call, sending_over


def pack_call(call: Call) -> bytes:
    try:
        payload = dumps_call(call, channel=Channel.NETWORK)
    except TypeError as exc:
        refused: TypeError | None = exc  # perhaps only for being in __main__: try by value
    else:
        # A pickle that names __main__ would look the name up in the worker's own __main__.
        if b"__main__" not in payload:
            return payload
        refused = None
    try:
        with sending_over(Channel.NETWORK):
            by_value: bytes = cloudpickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)
        return by_value
    except Exception as exc:
        if refused is not None:
            raise refused from None
        raise TypeError(f"cannot send {function_name(call.fn)} to a Dask worker: {exc}") from exc
