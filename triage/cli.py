"""`triage`: the one command line for data, training, thresholds, simulation and serving.

Each command is a plain function beside its logic (`training.commands`, `training.policy_cli`,
`serving.commands`; `triage.lifecycle` composes both for retraining and promotion); this module only
registers them, so neither training nor serving imports the other.
"""

from __future__ import annotations

import typer

from serving import audit_commands, quality_commands, rules_commands
from serving import commands as serving_commands
from training import commands as training_commands
from training import policy_cli, rule_suggest_cli, rules_cli
from triage import lifecycle

app = typer.Typer(
    help="Listing triage: train, evaluate, simulate and serve the listing-risk model.",
    no_args_is_help=True,
    add_completion=False,
)

for command in (
    training_commands.generate,
    training_commands.train,
    training_commands.evaluate,
    training_commands.score,
    training_commands.gate,
    lifecycle.retrain,
    lifecycle.promote,
    lifecycle.shadow_report,
    policy_cli.thresholds,
    policy_cli.simulate,
    serving_commands.serve,
    serving_commands.export_labels,
    serving_commands.monitor,
):
    app.command()(command)

keys_app = typer.Typer(help="API keys for the scoring service.", no_args_is_help=True)
keys_app.command("create")(serving_commands.keys_create)
keys_app.command("list")(serving_commands.keys_list)
keys_app.command("revoke")(serving_commands.keys_revoke)
keys_app.command("rotate")(serving_commands.keys_rotate)
keys_app.command("history")(serving_commands.keys_history)
app.add_typer(keys_app, name="keys")

rules_app = typer.Typer(
    help="Policy rules: analytics from the decision log, backtests on labelled history, suggestions mined "
    "from verdicts.",
    no_args_is_help=True,
)
rules_app.command("stats")(rules_commands.rules_stats)
rules_app.command("backtest")(rules_cli.backtest)
rules_app.command("suggest")(rule_suggest_cli.suggest)
app.add_typer(rules_app, name="rules")

decisions_app = typer.Typer(
    help="Decision audit: why a decision was made, by which model and policy, and what people did with it.",
    no_args_is_help=True,
)
decisions_app.command("show")(audit_commands.decisions_show)
app.add_typer(decisions_app, name="decisions")
reviewers_app = typer.Typer(
    help="Reviewer quality: agreement on blind second reviews, gold items.", no_args_is_help=True
)
reviewers_app.command("stats")(quality_commands.reviewers_stats)
app.add_typer(reviewers_app, name="reviewers")

if __name__ == "__main__":
    app()
