using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Interpretation;
using Microsoft.ML.Hazy.Robustness;
using Microsoft.ML.Hazy.SamplesSupport;
using Microsoft.ML.Hazy.Training;
using Spectre.Console;

namespace Hazy.Samples;

/// <summary>
/// The background-shift benchmark of mask-guided training (Parmar et al., 2022): ERM and GradMask, RRR and ActDiff with the
/// lesion mask, the task mask and the full image, in- and out-of-distribution, over seeds; the gap against training-set size;
/// Integrated Gradients maps of ERM and task-mask models on shifted images. Writes <c>metrics.json</c> and <c>maps.png</c>.
/// </summary>
internal static class MasksSample
{
    private static readonly int Side = BackgroundShiftOptions.Defaults.CanvasSize;

    private sealed record RunResult(string Method, string Mask, int Rows, int Seed, double InDistribution, double Shifted, double Seconds);

    private sealed record Summary(string Method, string Mask, int Rows, int Runs, double InDistributionMean, double InDistributionStd, double ShiftedMean, double ShiftedStd);

    private sealed class FullMaskRow
    {
        [VectorType(2304)] public bool[] FullMask = [];
    }

    private sealed class Empty
    {
    }

    public static int Run(SampleContext context)
    {
        var total = Stopwatch.StartNew();
        Directory.CreateDirectory(context.OutputDirectory);
        int rows = context.Integer("rows", 4000);
        int epochs = context.Integer("epochs", 4);
        int seeds = context.Integer("seeds", 3);
        var sizes = (context.Text("sizes") ?? "1000").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).Where(s => s < rows).ToArray();
        var methods = (context.Text("methods") ?? "GradMask,Rrr,ActDiff").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(m => Enum.Parse<MaskPenaltyKind>(m, ignoreCase: true)).ToArray();
        // λ per method ("GradMask=1e-4,Rrr=1e-3"). The reference's tuned values (MaskPenaltyOptions.Defaults) are sums over its
        // images at batch 16; over 2,304 pixels at batch 32 they swamp the loss (RRR collapses to a constant), so the sample's
        // defaults are the values picked from two probe runs: GradMask 1e-4, RRR 1e-3, ActDiff 1.
        var weights = methods.ToDictionary(m => m, m => m switch { MaskPenaltyKind.GradMask => 1e-4, MaskPenaltyKind.Rrr => 1e-3, _ => 1.0 });
        foreach (var pair in (context.Text("weights") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = pair.Split('=');
            weights[Enum.Parse<MaskPenaltyKind>(parts[0], ignoreCase: true)] = double.Parse(parts[1], CultureInfo.InvariantCulture);
        }
        TorchSharp.torch.set_num_threads(context.Integer("threads", 1));
        AnsiConsole.Write(new Rule("[bold]Masks[/]: mask-guided penalties on the background-shift benchmark").LeftJustified());

        var ml = new MLContext(seed: 1);
        var source = FashionMnistData.LoadDefault(ml);
        var shiftOptions = new BackgroundShiftOptions { Seed = 1 };
        var fullMask = ml.Transforms.CustomMapping<Empty, FullMaskRow>((_, o) => o.FullMask = Enumerable.Repeat(true, Side * Side).ToArray(), null);
        IDataView WithFull(IDataView d) => ml.Data.Cache(fullMask.Fit(d).Transform(d));
        var trainAll = WithFull(BackgroundShift.Generate(ml, source.Train, BackgroundShiftSplit.Train, shiftOptions));
        var inDistribution = ml.Data.Cache(BackgroundShift.Generate(ml, source.Test, BackgroundShiftSplit.InDistribution, shiftOptions));
        var shifted = ml.Data.Cache(BackgroundShift.Generate(ml, source.Test, BackgroundShiftSplit.Shifted, shiftOptions));
        long available = trainAll.GetRowCount() ?? trainAll.GetColumn<bool>("Label").LongCount();
        AnsiConsole.MarkupLine(Invariant($"Data: {Markup.Escape(source.Directory)}{(source.IsSubset ? " (subset)" : "")}; {available} training rows of the two classes, {rows} used; epochs {epochs}; seeds {seeds}; libtorch threads {TorchSharp.torch.get_num_threads()}."));

        CnnTrainer.Options Options(int seed, MaskPenaltyOptions? penalty) => new()
        {
            Height = Side,
            Width = Side,
            DropoutRate = 0,
            NumberOfEpochs = epochs,
            BatchSize = 32,
            LearningRate = 2e-3,
            Seed = seed,
            Penalty = penalty,
            CancellationToken = context.CancellationToken,
        };

        var results = new List<RunResult>();
        var models = new Dictionary<string, ITransformer>();
        RunResult Train(string method, string mask, int n, int seed, MaskPenaltyOptions? penalty)
        {
            // The first n rows (the source's order) for every seed: seeds vary the initialisation and the batch order.
            var train = ml.Data.TakeRows(trainAll, n);
            var clock = Stopwatch.StartNew();
            var model = ml.BinaryClassification.Trainers.HazyCnn(Options(seed, penalty)).Fit(train);
            double seconds = clock.Elapsed.TotalSeconds;
            double id = ml.BinaryClassification.EvaluateNonCalibrated(model.Transform(inDistribution)).Accuracy;
            double ood = ml.BinaryClassification.EvaluateNonCalibrated(model.Transform(shifted)).Accuracy;
            var result = new RunResult(method, mask, n, seed, id, ood, Math.Round(seconds, 1));
            AnsiConsole.MarkupLine(Invariant($"  {method,-8} {mask,-6} rows {n,5} seed {seed}: in-distribution {id:F4}, shifted {ood:F4} ({seconds:F0} s)"));
            string key = $"{method}/{mask}/{n}/{seed}";
            if (seed == 1 && n == rows)
                models[key] = model;
            else
                model.Dispose();
            return result;
        }

        string[] masks = ["lesion", "task", "full"];
        string Column(string mask) => mask switch { "lesion" => "LesionMask", "task" => "TaskMask", _ => "FullMask" };
        foreach (int n in sizes.Append(rows))
        {
            for (int seed = 1; seed <= seeds; seed++)
            {
                results.Add(Train("ERM", "-", n, seed, null));
                foreach (var method in methods)
                {
                    // The size curve runs the task and lesion masks only; the full mask is checked at the main size.
                    foreach (var mask in n == rows ? masks : masks[..2])
                        results.Add(Train(method.ToString(), mask, n, seed, new MaskPenaltyOptions { Kind = method, MaskColumnName = Column(mask), Weight = weights[method] }));
                }
            }
        }

        var summaries = results.GroupBy(r => (r.Method, r.Mask, r.Rows)).Select(g => new Summary(g.Key.Method, g.Key.Mask, g.Key.Rows, g.Count(),
            Mean(g.Select(r => r.InDistribution)), Std(g.Select(r => r.InDistribution)), Mean(g.Select(r => r.Shifted)), Std(g.Select(r => r.Shifted)))).ToList();
        foreach (int n in sizes.Append(rows))
        {
            var table = new Table().Title(Invariant($"{n} training rows, {seeds} seed(s): accuracy mean ± std")).AddColumn("Method").AddColumn("Mask")
                .AddColumn(new TableColumn("In-distribution").RightAligned()).AddColumn(new TableColumn("Shifted (OOD)").RightAligned());
            foreach (var s in summaries.Where(s => s.Rows == n))
                table.AddRow(s.Method, s.Mask, Invariant($"{s.InDistributionMean:F4} ± {s.InDistributionStd:F4}"), Invariant($"{s.ShiftedMean:F4} ± {s.ShiftedStd:F4}"));
            AnsiConsole.Write(table);
        }

        // The paper's finding, checked per method at the main size: task mask > lesion mask OOD, lesion mask ≤ ERM OOD.
        double Ood(string method, string mask, int n) => summaries.First(s => s.Method == method && s.Mask == mask && s.Rows == n).ShiftedMean;
        var findings = methods.Select(m => m.ToString()).Select(m => new
        {
            Method = m,
            TaskBeatsLesion = Ood(m, "task", rows) > Ood(m, "lesion", rows),
            LesionAtMostErm = Ood(m, "lesion", rows) <= Ood("ERM", "-", rows),
            TaskMinusErmBySize = sizes.Append(rows).ToDictionary(n => n.ToString(CultureInfo.InvariantCulture), n => Ood(m, "task", n) - Ood("ERM", "-", n)),
            FullEqualsErm = results.Where(r => r.Method == m && r.Mask == "full").All(r => results.Any(e => e.Method == "ERM" && e.Rows == r.Rows && e.Seed == r.Seed && e.Shifted == r.Shifted && e.InDistribution == r.InDistribution)),
        }).ToArray();
        foreach (var f in findings)
            AnsiConsole.MarkupLine(Invariant($"{f.Method}: task > lesion OOD: {(f.TaskBeatsLesion ? "yes" : "no")}; lesion ≤ ERM OOD: {(f.LesionAtMostErm ? "yes" : "no")}; full mask = ERM: {(f.FullEqualsErm ? "yes" : "no")}; task − ERM OOD by size: {string.Join(", ", f.TaskMinusErmBySize.Select(kv => $"{kv.Key}: {kv.Value:+0.0000;-0.0000}"))}"));

        // Integrated Gradients on shifted images: where ERM and the task- and lesion-mask models look.
        string gridPath = Path.Combine(context.OutputDirectory, "maps.png");
        var gridColumns = new List<string>();
        const int gridImages = 6;
        var shiftedFeatures = shifted.GetColumn<float[]>("Features").Take(gridImages).ToArray();
        var shiftedLabels = shifted.GetColumn<bool>("Label").Take(gridImages).ToArray();
        var x = shiftedFeatures.SelectMany(f => f).ToArray();
        var maps = new List<float[]>();
        var candidates = new List<string> { "ERM/-" };
        if (methods.Length > 0)
        {
            candidates.Add($"{methods[0]}/lesion");
            candidates.Add($"{methods[0]}/task");
        }
        foreach (var name in candidates)
        {
            if (!models.TryGetValue($"{name}/{rows}/1", out var model))
                continue;
            var attribution = ml.Hazy().Interpretation.Attribution(model, new GradientAttributionOptions { Method = GradientMethod.IntegratedGradients }).Fit(shifted).Method;
            maps.Add(attribution.Attribute(x, gridImages, new int[gridImages]));
            gridColumns.Add(name);
        }
        if (maps.Count > 0)
        {
            int pixels = Side * Side;
            var grid = new float[gridImages * maps.Count * pixels];
            for (int m = 0; m < maps.Count; m++)
                for (int i = 0; i < gridImages; i++)
                    Array.Copy(maps[m], i * pixels, grid, (i * maps.Count + m) * pixels, pixels);
            AttributionHeatMap.SaveGrid(gridPath, grid, gridImages, maps.Count, Side, Side, x, scale: 3, gap: 2);
        }
        foreach (var model in models.Values)
            (model as IDisposable)?.Dispose();

        var report = new
        {
            Dataset = source.Directory,
            source.IsSubset,
            Benchmark = new { shiftOptions.CanvasSize, shiftOptions.PositiveClass, shiftOptions.NegativeClass, shiftOptions.MarkerAgreement, shiftOptions.SiteAgreement, shiftOptions.NoiseLevel },
            Model = new { Kind = "CNN", Filters = Options(1, null).Filters, Epochs = epochs, BatchSize = 32, LearningRate = 2e-3, Dropout = 0.0 },
            Weights = weights.ToDictionary(kv => kv.Key.ToString(), kv => kv.Value),
            Rows = rows,
            Sizes = sizes,
            Seeds = seeds,
            Summaries = summaries,
            Findings = findings,
            Runs = results,
            MapsColumns = gridColumns.Prepend("input").ToArray(),
            MapsShiftedLabels = shiftedLabels,
            TorchThreads = TorchSharp.torch.get_num_threads(),
            TotalSeconds = Math.Round(total.Elapsed.TotalSeconds, 1),
        };
        string metricsPath = Path.Combine(context.OutputDirectory, "metrics.json");
        File.WriteAllText(metricsPath, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        AnsiConsole.MarkupLine($"Wrote [blue]{Markup.Escape(metricsPath)}[/]{(maps.Count > 0 ? $" and [blue]{Markup.Escape(gridPath)}[/] (columns: input, {string.Join(", ", gridColumns)})" : "")}.");
        AnsiConsole.MarkupLine(Invariant($"Done in {total.Elapsed.TotalSeconds:F0} s."));
        return 0;
    }

    private static double Mean(IEnumerable<double> values) => values.Average();

    private static double Std(IEnumerable<double> values)
    {
        var v = values.ToArray();
        if (v.Length < 2)
            return 0;
        double m = v.Average();
        return Math.Sqrt(v.Sum(x => (x - m) * (x - m)) / (v.Length - 1));
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
