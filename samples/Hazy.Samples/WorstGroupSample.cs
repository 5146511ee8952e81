using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Contrastive;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Robustness;
using Microsoft.ML.Hazy.SamplesSupport;
using Spectre.Console;

namespace Hazy.Samples;

/// <summary>
/// "Perfectly Balanced"'s worst-group use on Fashion-MNIST coarse classes (tops, footwear, other). Two protocols:
/// <c>marker</c> (the default, the issue's): a bright 4×4 patch in the top-left corner is planted in 95 % of the "other"
/// class's training images and 5 % of the rest, and in half of every class's test images; groups = (coarse class, marker).
/// <c>rare</c>: one fine class of each coarse class (Shirt, Sandal, Dress) keeps only a few percent of its training images;
/// groups = the ten fine classes. ERM is compared with group DRO on the true groups (a ceiling that needs annotation) and on
/// pseudo-groups from clustering each coarse class's embeddings (GEORGE) of SupCon, cross-entropy and Thanos encoders.
/// </summary>
internal static class WorstGroupSample
{
    // Rare in training: Shirt (tops), Sandal (footwear), Dress (other).
    private static readonly int[] RareFine = [6, 5, 3];

    private sealed class Row
    {
        [VectorType(28 * 28)]
        public float[] Features = [];
        public string CoarseName = "";
        public string FineName = "";
        public string GroupName = "";
    }

    private sealed class GroupName
    {
        public string Name = "";
    }

    private const int MarkerSide = 4;
    private const string MarkerClass = "other";

    public static int Run(SampleContext context)
    {
        var output = context.OutputDirectory;
        Directory.CreateDirectory(output);
        int trainRows = context.Integer("rows", 12000);
        int testRows = context.Integer("test-rows", 5000);
        int epochs = context.Integer("epochs", 5);
        double rareShare = context.Integer("rare-percent", 5) / 100.0;
        if (context.Integer("threads") is int threads)
            TorchSharp.torch.set_num_threads(threads);
        var ml = new MLContext(seed: 1);
        var (trainView, testView) = FashionMnistData.LoadDefault(ml, trainRows, testRows);
        bool marker = context.Choice("protocol", "marker") == "marker";
        var all = Read(trainView);
        var test = Read(testView);
        string[] groupNames;
        Row[] train;
        string setting;
        if (marker)
        {
            // Training: the marker in 95 % of "other" and 5 % of the rest (every 20th row decides); test: every other row.
            train = all.Select((r, i) => Mark(r, r.CoarseName == MarkerClass ? i % 20 != 0 : i % 20 == 0)).ToArray();
            test = test.Select((r, i) => Mark(r, i % 2 == 0)).ToArray();
            groupNames = ContrastiveSample.CoarseNames.SelectMany(c => new[] { $"{c}|marker", $"{c}|none" }).ToArray();
            setting = $"marker in {train.Count(r => r.GroupName.EndsWith("|marker"))} of {train.Length} training images (95 % of '{MarkerClass}', 5 % of the rest), half of the test images; groups = (coarse class, marker)";
        }
        else
        {
            var rare = new HashSet<string>(RareFine.Select(i => FashionMnist.ClassNames[i]));
            // Keep every row of a common fine class and the first rareShare of each rare class's rows.
            var keepRare = rare.ToDictionary(r => r, r => (int)Math.Round(all.Count(x => x.FineName == r) * rareShare));
            var seen = rare.ToDictionary(r => r, _ => 0);
            train = all.Where(x => !rare.Contains(x.FineName) || seen[x.FineName]++ < keepRare[x.FineName]).ToArray();
            foreach (var r in train.Concat(test))
                r.GroupName = r.FineName;
            groupNames = FashionMnist.ClassNames.ToArray();
            setting = $"rare in training: {string.Join(", ", rare.Select(r => $"{r} {keepRare[r]}"))}; groups = the 10 fine classes";
        }
        var trainData = Keyed(ml, train, groupNames);
        var testData = Keyed(ml, test, groupNames);
        AnsiConsole.MarkupLine($"Fashion-MNIST coarse classes {string.Join(", ", ContrastiveSample.CoarseNames)}; {train.Length} training and {test.Length} balanced test images; " +
            $"{Markup.Escape(setting)}; CNN, {epochs} epoch(s).");

        var results = new List<Dictionary<string, object>>();
        void Report(string name, ITransformer model, double seconds, double? minorityF1 = null, int? groups = null)
        {
            var metrics = ml.Hazy().EvaluateGroups(model.Transform(testData), groupColumnName: "Group");
            AnsiConsole.MarkupLine($"{Markup.Escape(name)}: worst group {metrics.WorstGroupAccuracy:F3} ({Markup.Escape(metrics.WorstGroup)}), " +
                $"mean group {metrics.MeanGroupAccuracy:F3}, accuracy {metrics.Accuracy:F3}, {seconds:F0} s");
            results.Add(new Dictionary<string, object>
            {
                ["method"] = name,
                ["worstGroupAccuracy"] = Math.Round(metrics.WorstGroupAccuracy, 4),
                ["worstGroup"] = metrics.WorstGroup,
                ["meanGroupAccuracy"] = Math.Round(metrics.MeanGroupAccuracy, 4),
                ["accuracy"] = Math.Round(metrics.Accuracy, 4),
                ["pseudoGroups"] = groups?.ToString() ?? "",
                ["pseudoGroupMinorityF1"] = minorityF1 is double p ? Math.Round(p, 4) : "",
                ["seconds"] = Math.Round(seconds, 1),
            });
        }

        CnnTrainer.Options Cnn(GroupDroOptions? dro) => new()
        {
            Height = 28, Width = 28, Filters = [32, 64], NumberOfEpochs = epochs, BatchSize = 128, LearningRate = 2e-3, Seed = 1,
            Penalty = dro, CancellationToken = context.CancellationToken,
        };
        (ITransformer Model, double Seconds) Train(IDataView data, GroupDroOptions? dro)
        {
            var watch = Stopwatch.StartNew();
            var model = ml.MulticlassClassification.Trainers.HazyCnn(Cnn(dro)).Fit(data);
            return (model, watch.Elapsed.TotalSeconds);
        }

        var erm = Train(trainData, null);
        Report("ERM", erm.Model, erm.Seconds);
        var oracle = Train(trainData, new GroupDroOptions { GroupColumnName = "Group" });
        Report("group DRO, true groups (oracle)", oracle.Model, oracle.Seconds);

        ContrastiveTrainer.Options Encoder(ContrastiveTrainer.Options o)
        {
            o.Encoder = ContrastiveEncoder.Cnn;
            o.Height = 28;
            o.Width = 28;
            o.Filters = [32, 64];
            o.EmbeddingSize = 64;
            o.NumberOfEpochs = epochs;
            o.BatchSize = 128;
            o.LearningRate = 2e-3;
            o.Seed = 1;
            o.CancellationToken = context.CancellationToken;
            return o;
        }
        var encoders = new (string Name, Func<IEstimator<ITransformer>> Estimator)[]
        {
            ("SupCon embeddings", () => ml.Hazy().Contrastive(Encoder(ContrastiveTrainer.Options.SupCon()))),
            ("CE embeddings", () => ml.Hazy().Contrastive(Encoder(ContrastiveTrainer.Options.CrossEntropy()))),
            ("Thanos embeddings", () => ml.Hazy().Thanos(Encoder(ContrastiveTrainer.Options.Spread()), Encoder(ContrastiveTrainer.Options.Autoencoder()))),
        };
        foreach (var (name, estimator) in encoders)
        {
            var watch = Stopwatch.StartNew();
            var encoder = estimator().Fit(trainData);
            var embedded = encoder.Transform(trainData);
            var groups = ml.Hazy().Slicing.ProposeGroups(embedded, "Embedding", outputColumnName: "PseudoGroup", seed: 1);
            double minorityF1 = MinorityF1(groups.Groups, train);
            AnsiConsole.MarkupLine($"{Markup.Escape(name)}: {groups.GroupNames.Count} pseudo-groups (per coarse class {string.Join("/", groups.ClustersPerClass)}), minority F1 {minorityF1:F3}");
            var dro = Train(groups.Data, new GroupDroOptions { GroupColumnName = "PseudoGroup" });
            Report($"group DRO, pseudo-groups from {name}", dro.Model, watch.Elapsed.TotalSeconds, minorityF1, groups.GroupNames.Count);
            (encoder as IDisposable)?.Dispose();
            (dro.Model as IDisposable)?.Dispose();
        }
        (erm.Model as IDisposable)?.Dispose();
        (oracle.Model as IDisposable)?.Dispose();

        var table = new Table().AddColumns("method", "worst-group acc", "worst group", "mean group acc", "accuracy", "pseudo-groups", "minority F1", "s");
        foreach (var r in results)
            table.AddRow(Markup.Escape((string)r["method"]), $"{r["worstGroupAccuracy"]:F3}", Markup.Escape((string)r["worstGroup"]), $"{r["meanGroupAccuracy"]:F3}",
                $"{r["accuracy"]:F3}", $"{r["pseudoGroups"]}", $"{r["pseudoGroupMinorityF1"]}", $"{r["seconds"]:F0}");
        AnsiConsole.Write(table);
        var json = new Dictionary<string, object>
        {
            ["protocol"] = $"Fashion-MNIST, coarse labels tops/footwear/other; {setting}. Worst-group accuracy = min over groups of coarse test accuracy. " +
                "Pseudo-groups: per-coarse-class k-means on the encoder's embedding, k by silhouette (1..5). Minority F1 = for each true group with less than " +
                "half of its class's training rows, the best F1 of one pseudo-group as its detector, averaged.",
            ["trainRows"] = train.Length,
            ["testRows"] = test.Length,
            ["epochs"] = epochs,
            ["setting"] = marker ? "marker" : "rare",
            ["rarePercent"] = marker ? 0 : rareShare * 100,
            ["results"] = results,
        };
        var path = Path.Combine(output, "metrics.json");
        File.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }) + Environment.NewLine);
        AnsiConsole.MarkupLine($"Wrote {Markup.Escape(path)}");
        return 0;
    }

    private static Row[] Read(IDataView data)
    {
        var features = data.GetColumn<float[]>("Features").ToArray();
        var labels = data.GetColumn<uint>("Label").ToArray();
        return features.Select((f, i) => new Row
        {
            Features = f,
            FineName = FashionMnist.ClassNames[(int)labels[i] - 1],
            CoarseName = ContrastiveSample.CoarseNames[ContrastiveSample.Coarse[(int)labels[i] - 1]],
        }).ToArray();
    }

    private static Row Mark(Row row, bool marked)
    {
        var features = (float[])row.Features.Clone();
        if (marked)
            for (int y = 0; y < MarkerSide; y++)
                for (int x = 0; x < MarkerSide; x++)
                    features[y * 28 + x] = 1f;
        return new Row { Features = features, CoarseName = row.CoarseName, FineName = row.FineName, GroupName = $"{row.CoarseName}|{(marked ? "marker" : "none")}" };
    }

    private static IDataView Keyed(MLContext ml, Row[] rows, string[] groupNames)
    {
        var view = ml.Data.LoadFromEnumerable(rows);
        // Fixed key orders, so that training and test data number the classes and groups alike.
        return ml.Transforms.Conversion.MapValueToKey("Label", nameof(Row.CoarseName), keyData: Terms(ml, ContrastiveSample.CoarseNames, nameof(Row.CoarseName)))
            .Append(ml.Transforms.Conversion.MapValueToKey("Group", nameof(Row.GroupName), keyData: Terms(ml, groupNames, nameof(Row.GroupName))))
            .Fit(view).Transform(view);
    }

    private static IDataView Terms(MLContext ml, IEnumerable<string> names, string column)
    {
        var view = ml.Data.LoadFromEnumerable(names.Select(n => new GroupName { Name = n }));
        return ml.Transforms.CopyColumns(column, nameof(GroupName.Name)).Append(ml.Transforms.SelectColumns(column)).Fit(view).Transform(view);
    }

    /// <summary>
    /// How well the pseudo-groups find the minority groups: for each true group holding less than half of its class's training
    /// rows, the best F1 of any pseudo-group as a detector of it; the mean over those groups (1 = each minority found exactly).
    /// </summary>
    private static double MinorityF1(IReadOnlyList<int> pseudo, Row[] rows)
    {
        var minorities = rows.GroupBy(r => r.CoarseName)
            .SelectMany(c => c.GroupBy(r => r.GroupName).Where(g => g.Count() * 2 < c.Count()).Select(g => g.Key)).ToArray();
        if (minorities.Length == 0)
            return double.NaN;
        return minorities.Average(g =>
        {
            var isG = rows.Select(r => r.GroupName == g).ToArray();
            int total = isG.Count(b => b);
            return pseudo.Distinct().Max(p =>
            {
                int inP = pseudo.Count(x => x == p), both = pseudo.Where((x, i) => x == p && isG[i]).Count();
                return both == 0 ? 0 : 2.0 * both / (inP + total);
            });
        });
    }
}
