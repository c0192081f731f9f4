"""The champion is handed to serving whenever it changes; nothing is handed off when no publisher is set."""
from __future__ import annotations

from spira_lib.pipeline.hand_off import hand_off_champion
from spira_lib.ports import ModelPublisher, PublishedModel
from tests.unit.spira_lib.scoring._helpers import setup


class FakePublisher:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def publish(self, name, version, checkpoint, metadata, *, threshold=0.5) -> PublishedModel:
        self.calls.append((name, version, len(checkpoint), metadata.get("training_key"), threshold))
        return PublishedModel(name=name, version=str(len(self.calls)), uri=f"models:/{name}@champion", location="fake")


def test_the_current_champion_is_published_with_its_metadata():
    spec = setup(0, challenger=True)
    ws = spec.workspace()
    assert hand_off_champion(ws, "spira") is None  # off: no publisher configured
    ws.publisher = FakePublisher()
    assert isinstance(ws.publisher, ModelPublisher)
    published = hand_off_champion(ws, "spira", threshold=0.4)
    assert published.uri == "models:/spira@champion"
    ws.registry.promote("spira", 2, reason="test")
    hand_off_champion(ws, "spira")
    assert [(c[0], c[1], c[3], c[4]) for c in ws.publisher.calls] == [("spira", 1, "a", 0.4), ("spira", 2, "b", 0.5)]
