"""The rule families: one module per family, each owning its rules whole (a frozen
:class:`~echoprep.plan.rule.RuleDef` per rule next to the family class whose method of the
rule's name gives its files and arguments). See ``docs/architecture.md``."""
