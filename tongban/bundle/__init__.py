"""一件事一次办: bundled applications split across departments' legacy systems and gathered again (docs/bundles.md).

`definition` reads the YAML definitions under mappings/bundles/, `submit` finds a member's department system,
`tables` holds bundles and members, `gather` (scatter-gather on the bus) submits members in dependency order and
concludes bundles, `deadlines` watches 承诺时限.
"""
