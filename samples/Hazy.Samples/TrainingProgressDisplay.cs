using System.Globalization;
using Microsoft.ML.Hazy.Training;
using Spectre.Console;

namespace Hazy.Samples;

/// <summary>
/// Shows a Hazy trainer's <see cref="TrainingProgress"/> reports: a Spectre.Console progress bar advanced every
/// optimizer step on a terminal, and one line per epoch everywhere. When the output is redirected (CI logs,
/// <c>&gt; log.txt</c>) there is no bar, only the epoch lines, so the log holds no cursor movements.
/// </summary>
internal sealed class TrainingProgressDisplay : IProgress<TrainingProgress>
{
    private readonly bool _showBar = !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
    private ProgressTask? _task;

    /// <summary>Runs <paramref name="train"/>, which must send its trainer's reports to this display.</summary>
    public T Run<T>(string title, Func<T> train)
    {
        if (!_showBar)
        {
            AnsiConsole.MarkupLine($"{Markup.Escape(title)}...");
            return train();
        }

        return AnsiConsole.Progress()
            .AutoRefresh(true)
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(
                new TaskDescriptionColumn { Alignment = Justify.Left },
                new ProgressBarColumn(),
                new PercentageColumn(),
                new ElapsedTimeColumn(),
                new RemainingTimeColumn(),
                new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: 1);
                Volatile.Write(ref _task, task);
                try
                {
                    var result = train();
                    // Early stopping ends before the last planned step; the bar still ends full.
                    task.Value = task.MaxValue;
                    return result;
                }
                finally
                {
                    task.StopTask();
                    Volatile.Write(ref _task, null);
                }
            });
    }

    /// <summary>Called by the trainer after every step and every epoch, on the training thread.</summary>
    public void Report(TrainingProgress value)
    {
        if (Volatile.Read(ref _task) is { } task)
        {
            task.MaxValue = (double)value.NumberOfEpochs * value.StepsPerEpoch;
            task.Value = (double)(value.Epoch - 1) * value.StepsPerEpoch + value.Step;
            task.Description = string.Create(CultureInfo.InvariantCulture,
                $"Epoch {value.Epoch}/{value.NumberOfEpochs}  loss {value.TrainLoss:F4}");
        }

        if (value.EpochCompleted)
            AnsiConsole.MarkupLine(EpochLine(value));
    }

    private static string EpochLine(TrainingProgress p)
    {
        var line = string.Create(CultureInfo.InvariantCulture,
            $"  epoch {p.Epoch,2}/{p.NumberOfEpochs}  train loss {p.TrainLoss:F4}");
        if (p.ValidationLoss is double loss)
            line += string.Create(CultureInfo.InvariantCulture, $"  validation loss {loss:F4}  validation {Markup.Escape(p.MetricName)} {p.ValidationMetric:F4}");
        line += string.Create(CultureInfo.InvariantCulture, $"  [grey]({p.Elapsed.TotalSeconds:F1} s elapsed)[/]");
        return line;
    }
}
