using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.Hazy.SamplesSupport;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Contrastive;
using Microsoft.ML.Hazy.Data;
using Spectre.Console;

namespace Hazy.Samples;

/// <summary>
/// "Perfectly Balanced" coarse → fine transfer on Fashion-MNIST: encoders trained on three coarse classes only (tops,
/// footwear, other), frozen, and probed with a stock ML.NET linear classifier on the ten fine classes.
/// </summary>
internal static class ContrastiveSample
{
    // Fine class → coarse: tops {T-shirt/top, Pullover, Coat, Shirt}, footwear {Sandal, Sneaker, Ankle boot}, other {Trouser, Dress, Bag}.
    internal static readonly int[] Coarse = [0, 2, 0, 2, 0, 1, 0, 1, 2, 1];
    internal static readonly string[] CoarseNames = ["tops", "footwear", "other"];

    private sealed class Row
    {
        [VectorType(28 * 28)]
        public float[] Features = [];
        public string CoarseName = "";
        public string FineName = "";
    }

    private sealed class EmbeddingRow
    {
        public float[] Embedding = [];
        public string FineName = "";
    }

    private sealed record Method(string Name, Func<ContrastiveTrainer.Options> Options, bool Fine = false);

    public static int Run(SampleContext context)
    {
        var output = context.OutputDirectory;
        Directory.CreateDirectory(output);
        int trainRows = context.Integer("rows", 12000);
        int testRows = context.Integer("test-rows", 5000);
        int epochs = context.Integer("epochs", 10);
        if (context.Integer("threads") is int threads)
            TorchSharp.torch.set_num_threads(threads);
        var ml = new MLContext(seed: 1);
        var (trainView, testView) = FashionMnistData.LoadDefault(ml, trainRows, testRows);
        var train = Read(ml, trainView);
        var test = Read(ml, testView);
        AnsiConsole.MarkupLine($"Fashion-MNIST: {train.Length} training and {test.Length} test images; coarse classes {string.Join(", ", CoarseNames)}; CNN encoder, {epochs} epoch(s) each.");

        var methods = new[]
        {
            new Method("CE (coarse)", ContrastiveTrainer.Options.CrossEntropy),
            new Method("SupCon", ContrastiveTrainer.Options.SupCon),
            new Method("SupCon+cNCE (spread)", () => ContrastiveTrainer.Options.Spread()),
            new Method("CE+AE", ContrastiveTrainer.Options.Autoencoder),
            new Method("CE (fine, ceiling)", ContrastiveTrainer.Options.CrossEntropy, Fine: true),
        };
        var results = new List<Dictionary<string, object>>();
        var embeddings = new Dictionary<string, (float[][] Train, float[][] Test, double Seconds)>();
        foreach (var m in methods)
        {
            var o = m.Options();
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
            o.LabelColumnName = m.Fine ? "FineLabel" : "Label";
            var watch = Stopwatch.StartNew();
            using var model = ml.Hazy().Contrastive(o).Fit(Keyed(ml, train));
            double seconds = watch.Elapsed.TotalSeconds;
            var e = (Embed(model, ml, train), Embed(model, ml, test), seconds);
            embeddings[m.Name] = e;
            results.Add(Evaluate(ml, m.Name, e.Item1, e.Item2, train, test, seconds));
        }
        // Thanos: the spread encoder's and the autoencoder's embeddings side by side (what ThanosEstimator outputs for the same options).
        var spread = embeddings["SupCon+cNCE (spread)"];
        var ae = embeddings["CE+AE"];
        results.Insert(4, Evaluate(ml, "Thanos (spread ‖ AE)", Concat(spread.Train, ae.Train), Concat(spread.Test, ae.Test), train, test, spread.Seconds + ae.Seconds));

        var table = new Table().AddColumns("method", "fine test accuracy", "coarse test accuracy", "collapse (within/total var)", "train s");
        foreach (var r in results)
            table.AddRow(Markup.Escape((string)r["method"]), $"{r["fineAccuracy"]:F3}", $"{r["coarseAccuracy"]:F3}", $"{r["collapse"]:F3}", $"{r["trainSeconds"]:F0}");
        AnsiConsole.Write(table);

        var metrics = new Dictionary<string, object>
        {
            ["protocol"] = "Fashion-MNIST coarse (tops/footwear/other) -> fine; encoders trained on coarse labels (except the ceiling), frozen; " +
                "LbfgsMaximumEntropy on the Embedding column with fine training labels; accuracy on the fine test labels. Collapse = mean within-coarse-class " +
                "variance of L2-normalised test embeddings over their total variance.",
            ["trainRows"] = train.Length,
            ["testRows"] = test.Length,
            ["epochs"] = epochs,
            ["encoder"] = "Hazy CNN, filters [32, 64], kernel 3, stride 2, embedding 64 (L2-normalised), batch 128, lr 2e-3, seed 1",
            ["results"] = results,
        };
        var path = Path.Combine(output, "metrics.json");
        File.WriteAllText(path, JsonSerializer.Serialize(metrics, new JsonSerializerOptions { WriteIndented = true }) + Environment.NewLine);
        AnsiConsole.MarkupLine($"Wrote {Markup.Escape(path)}");
        return 0;
    }

    private static Row[] Read(MLContext ml, IDataView data)
    {
        var features = data.GetColumn<float[]>("Features").ToArray();
        var labels = data.GetColumn<uint>("Label").ToArray();
        return features.Select((f, i) => new Row
        {
            Features = f,
            FineName = FashionMnist.ClassNames[(int)labels[i] - 1],
            CoarseName = CoarseNames[Coarse[(int)labels[i] - 1]],
        }).ToArray();
    }

    private static IDataView Keyed(MLContext ml, Row[] rows)
    {
        var view = ml.Data.LoadFromEnumerable(rows);
        return ml.Transforms.Conversion.MapValueToKey("Label", nameof(Row.CoarseName))
            .Append(ml.Transforms.Conversion.MapValueToKey("FineLabel", nameof(Row.FineName)))
            .Fit(view).Transform(view);
    }

    private static float[][] Embed(ITransformer model, MLContext ml, Row[] rows) =>
        model.Transform(ml.Data.LoadFromEnumerable(rows)).GetColumn<float[]>("Embedding").ToArray();

    private static float[][] Concat(float[][] a, float[][] b) => a.Select((x, i) => x.Concat(b[i]).ToArray()).ToArray();

    private static Dictionary<string, object> Evaluate(MLContext ml, string name, float[][] trainEmbedding, float[][] testEmbedding, Row[] train, Row[] test, double seconds)
    {
        double fine = Probe(ml, trainEmbedding, testEmbedding, train.Select(r => r.FineName).ToArray(), test.Select(r => r.FineName).ToArray());
        double coarse = Probe(ml, trainEmbedding, testEmbedding, train.Select(r => r.CoarseName).ToArray(), test.Select(r => r.CoarseName).ToArray());
        double collapse = Collapse(testEmbedding, test.Select(r => r.CoarseName).ToArray());
        AnsiConsole.MarkupLine($"{Markup.Escape(name)}: fine {fine:F3}, coarse {coarse:F3}, collapse {collapse:F3}, {seconds:F0} s");
        return new Dictionary<string, object>
        {
            ["method"] = name,
            ["fineAccuracy"] = Math.Round(fine, 4),
            ["coarseAccuracy"] = Math.Round(coarse, 4),
            ["collapse"] = Math.Round(collapse, 4),
            ["trainSeconds"] = Math.Round(seconds, 1),
        };
    }

    /// <summary>A stock ML.NET linear classifier (L-BFGS maximum entropy) on the frozen embeddings; test accuracy.</summary>
    private static double Probe(MLContext ml, float[][] trainEmbedding, float[][] testEmbedding, string[] trainLabels, string[] testLabels)
    {
        var trainData = ml.Data.LoadFromEnumerable(trainEmbedding.Select((e, i) => new EmbeddingRow { Embedding = e, FineName = trainLabels[i] }),
            SchemaDefinition(trainEmbedding[0].Length));
        var testData = ml.Data.LoadFromEnumerable(testEmbedding.Select((e, i) => new EmbeddingRow { Embedding = e, FineName = testLabels[i] }),
            SchemaDefinition(testEmbedding[0].Length));
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", nameof(EmbeddingRow.FineName))
            .Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy(featureColumnName: "Embedding"));
        var model = pipeline.Fit(trainData);
        return ml.MulticlassClassification.Evaluate(model.Transform(testData)).MicroAccuracy;
    }

    private static SchemaDefinition SchemaDefinition(int width)
    {
        var schema = Microsoft.ML.Data.SchemaDefinition.Create(typeof(EmbeddingRow));
        schema[nameof(EmbeddingRow.Embedding)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, width);
        return schema;
    }

    /// <summary>Mean within-class variance of the L2-normalised embeddings over their total variance (0 = each class collapsed to a point).</summary>
    private static double Collapse(float[][] embeddings, string[] classes)
    {
        var unit = embeddings.Select(e =>
        {
            double n = Math.Sqrt(e.Sum(v => (double)v * v));
            return e.Select(v => v / Math.Max(n, 1e-12)).ToArray();
        }).ToArray();
        int d = unit[0].Length;
        double[] Mean(IEnumerable<double[]> rows)
        {
            var m = new double[d];
            int count = 0;
            foreach (var r in rows)
            {
                for (int j = 0; j < d; j++)
                    m[j] += r[j];
                count++;
            }
            return m.Select(v => v / count).ToArray();
        }
        double Spread(IEnumerable<double[]> rows, double[] centre) => rows.Sum(r => r.Select((v, j) => (v - centre[j]) * (v - centre[j])).Sum());
        double total = Spread(unit, Mean(unit));
        double within = classes.Distinct().Sum(c =>
        {
            var rows = unit.Where((_, i) => classes[i] == c).ToArray();
            return Spread(rows, Mean(rows));
        });
        return within / total;
    }
}
