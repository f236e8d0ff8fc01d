"""The test suite's Tansu comes back if it dies mid-session, on its port, saying so."""

from __future__ import annotations

import asyncio
import os
import signal

from aiokafka import AIOKafkaProducer

from lookout.testing.brokers import TansuBroker


async def test_a_killed_tansu_is_started_again_on_its_port_and_takes_records():
    broker = TansuBroker().start()
    try:
        assert broker.revive() is None  # running: left alone
        port = broker.port
        assert broker.proc is not None
        os.kill(broker.proc.pid, signal.SIGKILL)
        broker.proc.wait(10)
        assert broker.revive() is not None  # its log's tail
        assert broker.alive() and broker.port == port
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            await asyncio.wait_for(producer.send_and_wait("revived", b"x"), 30)
        finally:
            await producer.stop()
    finally:
        broker.close()
