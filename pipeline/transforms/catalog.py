"""Reference data the merge needs, fed at run time from the compacted ``config`` topic.

Keys are ``model/<project id or "*">/<model id>`` and ``score-config/<project id>/<config id>``; a null value
deletes. Every worker reads the whole topic (no consumer group), so all of them see the same catalog, and a
change applies to the next batch without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from pipeline.transforms.pricing import Model, ModelTable, model_from_dict

GLOBAL_SCOPE = "*"
OTHER_KINDS = frozenset({"api-key"})  # records on the same topic for the gateway (``gateway/keys.py``)


class CategoryOption(msgspec.Struct):
    label: str
    value: float


class ScoreConfig(msgspec.Struct):
    id: str
    project_id: str
    name: str
    data_type: str
    min_value: float | None = None
    max_value: float | None = None
    categories: list[CategoryOption] | None = None
    is_archived: bool = False


def model_key(project_id: str | None, model_id: str) -> str:
    return f"model/{project_id or GLOBAL_SCOPE}/{model_id}"


def score_config_key(project_id: str, config_id: str) -> str:
    return f"score-config/{project_id}/{config_id}"


@dataclass
class Catalog:
    defaults: list[Model]
    models: dict[str, Model] = field(default_factory=dict)
    score_configs: dict[tuple[str, str], ScoreConfig] = field(default_factory=dict)
    _table: ModelTable | None = None

    @classmethod
    def with_defaults(cls) -> Catalog:
        return cls(ModelTable.default().models)

    @property
    def model_table(self) -> ModelTable:
        table = self._table
        if table is None:
            # A project or global model with the same id as a default replaces it.
            models = self.models
            overridden = {model.id for model in models.values()}
            table = ModelTable([m for m in self.defaults if m.id not in overridden] + list(models.values()))
            self._table = table
        return table

    def apply(self, key: str, value: dict[str, Any] | None) -> None:
        """One record of the config topic; raises ValueError for a key or value it cannot use."""
        kind, _, rest = key.partition("/")
        scope, _, item_id = rest.partition("/")
        if not scope or not item_id:
            raise ValueError(f"config key {key!r} is not <kind>/<project>/<id>")
        # Copy on write: batches read the catalog on another thread while the feed applies changes.
        if kind == "model":
            models = {k: m for k, m in self.models.items() if k != key}
            if value is not None:
                project = None if scope == GLOBAL_SCOPE else scope
                models[key] = model_from_dict({**value, "id": item_id, "project_id": project})
            self.models = models
            self._table = None
        elif kind == "score-config":
            configs = {k: c for k, c in self.score_configs.items() if k != (scope, item_id)}
            if value is not None:
                configs[(scope, item_id)] = msgspec.convert({**value, "id": item_id, "project_id": scope}, ScoreConfig)
            self.score_configs = configs
        elif kind not in OTHER_KINDS:
            raise ValueError(f"unknown config kind {kind!r} in key {key!r}")

    def score_config(self, project_id: str, config_id: str) -> ScoreConfig | None:
        return self.score_configs.get((project_id, config_id))
