using System.CommandLine;
using BitBudget.Clado;
using Spectre.Console;

namespace BitBudget.Cli.Commands;

static class MergeCommand
{
    public static Command Create()
    {
        var target = new Argument<FileInfo>("target") { Description = "Store to merge into (created if missing)." };
        var sources = new Argument<FileInfo[]>("sources") { Description = "Stores to merge from (e.g. the shards).", Arity = ArgumentArity.OneOrMore };
        var command = new Command("merge", "Combine CLADO measurement stores (e.g. from --shard k/n workers) into one.") { target, sources };
        command.SetAction(parse =>
        {
            FileInfo[] from = parse.GetRequiredValue(sources);
            foreach (FileInfo f in from)
            {
                if (!f.Exists) { throw Errors.FileNotFound($"Measurement store '{f.FullName}' does not exist."); }
            }
            long added = CladoSensitivity.MergeStores(parse.GetRequiredValue(target).FullName, from.Select(f => f.FullName));
            Ui.Out.MarkupLine($"merged {from.Length} store(s): {added:N0} losses added to {Markup.Escape(parse.GetRequiredValue(target).FullName)}");
            return ExitCodes.Ok;
        });
        return command;
    }
}
