"""The control plane's request handlers, one class per kind of Memphis object.

Each class takes the :class:`~memphis_sync.broker.context.BrokerContext` (and the other handlers
it needs) in its constructor; :mod:`memphis_sync.broker.control_plane` builds and wires them.
Wiring order, lowest first: :mod:`.schemas` and :mod:`.dls` (context only), :mod:`.stations`
(schemas), :mod:`.producers` (stations, schemas), :mod:`.consumers` (stations, schemas, DLS).
"""
