using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.SamplesSupport;
using Microsoft.ML.Hazy.Training;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.PerformanceTests;

/// <summary>
/// Scoring speed of one Hazy MLP on Fashion-MNIST: the saved ML.NET model (a per-row OnnxTransformer), eager
/// TorchSharp on the live network, and ONNX Runtime on the batched export, over the same pre-materialised
/// rows; then single-row PredictionEngine latency.
/// </summary>
internal static class ScoringBenchmark
{
    public const string Description =
        "MLP [256,128] on Fashion-MNIST: saved ML.NET model vs eager TorchSharp vs raw ONNX Runtime, plus PredictionEngine latency";

    private const int FeatureSize = FashionMnist.ImageSize * FashionMnist.ImageSize;
    private const int Classes = 10;
    private const int Seed = 42;
    private const int Epochs = 2;
    // Few, large steps keep the set-up short.
    private const int TrainBatchSize = 256;
    private const int Warmups = 2;
    private const int Repetitions = 9;
    private const int LatencyWarmups = 200;
    private const int LatencyPredictions = 2_000;
    private static readonly int[] Hidden = [256, 128];

    /// <summary>One input row, as the ML.NET paths read it.</summary>
    private sealed class ImageRow
    {
        [VectorType(FeatureSize)]
        public float[] Features = Array.Empty<float>();
    }

    /// <summary>The PredictionEngine's output: the class probabilities.</summary>
    private sealed class ScoreRow
    {
        public float[] Score = Array.Empty<float>();
    }

    public static int Run(BenchmarkArgs args)
    {
        string? jsonPath = args.String("json");
        int rowCount = args.Int("rows", 10_000);
        args.EnsureAllUsed();

        var total = Stopwatch.StartNew();
        var machine = Harness.Machine();
        var notes = new List<string>();
        var ml = new MLContext(Seed);
        var source = FashionMnistData.LoadDefault(ml);
        Console.WriteLine($"Fashion-MNIST from {source.Directory}{(source.IsSubset ? " (the repository's subset, not the full data set)" : "")}.");

        Console.WriteLine($"Training MLP [{string.Join(",", Hidden)}], {Epochs} epochs, batch {TrainBatchSize}, seed {Seed}, 1 torch thread ...");
        var trainClock = Stopwatch.StartNew();
        using var model = Train(ml, source.Train);
        double trainSeconds = trainClock.Elapsed.TotalSeconds;
        Console.WriteLine($"Trained in {trainSeconds:F1} s; final epoch train loss {model.TrainingHistory[^1].TrainLoss:F4}.");

        Harness.NoteIfBusy(machine, notes);

        var (features, labels, testRows) = Materialize(source.Test, rowCount);
        if (testRows < rowCount)
        {
            var note = $"The test split has {Harness.FormatCount(testRows)} rows; they are repeated to make {Harness.FormatCount(rowCount)} rows.";
            notes.Add(note);
            Console.WriteLine(note);
        }
        else if (testRows > rowCount)
        {
            notes.Add($"The first {Harness.FormatCount(rowCount)} of the test split's {Harness.FormatCount(testRows)} rows are scored.");
        }
        Console.WriteLine($"Scoring {Harness.FormatCount(rowCount)} rows, pre-materialised as float[][]; every method reads them from memory. "
            + $"Torch threads: {get_num_threads()}, logical cores: {Environment.ProcessorCount}, load average before the run {machine.LoadAverageAtStart?.ToString("F2", CultureInfo.InvariantCulture) ?? "n/a"}.");
        Console.WriteLine();

        // 1. The saved ML.NET model, loaded in a fresh context: what a consumer of the .zip runs.
        var inputs = features.Select(f => new ImageRow { Features = f }).ToArray();
        var fresh = new MLContext(Seed);
        var path = Path.Combine(Path.GetTempPath(), $"hazy-scoring-{Guid.NewGuid():N}.zip");
        ITransformer loaded;
        DataViewSchema loadedSchema;
        try
        {
            ml.Model.Save(model, ml.Data.LoadFromEnumerable(inputs).Schema, path);
            loaded = fresh.Model.Load(path, out loadedSchema);
        }
        finally
        {
            File.Delete(path);
        }
        var data = fresh.Data.LoadFromEnumerable(inputs);

        var mlnetScores = new float[rowCount * Classes];
        var mlnet = Harness.Measure("ML.NET saved model, Transform + cursor", () => ScoreWithMlNet(loaded, data, mlnetScores),
            Warmups, Repetitions, rowCount);

        // 2. Eager TorchSharp on the live network, tensor creation from the float arrays included.
        var network = model.Network;
        network.eval();
        var torch256Scores = new float[rowCount * Classes];
        var torch256 = Harness.Measure("TorchSharp eager, batch 256", () => ScoreWithTorch(network, features, 256, torch256Scores),
            Warmups, Repetitions, rowCount);
        // libtorch's intra-op threads wait on each other at every operator; on a busy machine one thread can win.
        int torchThreads = get_num_threads();
        var torchOneThreadScores = new float[rowCount * Classes];
        Measurement torchOneThread;
        set_num_threads(1);
        try
        {
            torchOneThread = Harness.Measure("TorchSharp eager, batch 256, 1 thread", () => ScoreWithTorch(network, features, 256, torchOneThreadScores),
                Warmups, Repetitions, rowCount);
        }
        finally
        {
            set_num_threads(torchThreads);
        }
        var torchAllScores = new float[rowCount * Classes];
        int bigBatch = Math.Min(10_000, rowCount);
        var torchAll = Harness.Measure($"TorchSharp eager, batch {Harness.FormatCount(bigBatch)}",
            () => ScoreWithTorch(network, features, bigBatch, torchAllScores), Warmups, Repetitions, rowCount);

        // 3. ONNX Runtime on the batched export: the same graph ML.NET runs, without ML.NET's per-row calls.
        using var onnx = new MemoryStream();
        model.SaveAsOnnx(onnx);
        using var session = new InferenceSession(onnx.ToArray());
        var ort256Scores = new float[rowCount * Classes];
        var ort256 = Harness.Measure("ONNX Runtime session, batch 256", () => ScoreWithOrt(session, features, 256, ort256Scores),
            Warmups, Repetitions, rowCount);
        var ort1Scores = new float[rowCount * Classes];
        var ort1 = Harness.Measure("ONNX Runtime session, batch 1", () => ScoreWithOrt(session, features, 1, ort1Scores),
            Warmups, Repetitions, rowCount);

        // 4. Single-row latency through a PredictionEngine of the loaded model.
        using var engine = fresh.Model.CreatePredictionEngine<ImageRow, ScoreRow>(loaded, loadedSchema);
        var output = new ScoreRow();
        var latency = Harness.MeasureLatency("PredictionEngine.Predict", i => engine.Predict(inputs[i % inputs.Length], ref output),
            LatencyWarmups, LatencyPredictions);

        // The methods must compute the same thing for the comparison to mean anything.
        var agreement = new Dictionary<string, object?>
        {
            ["torchBatch256"] = MaxAbsDiff(mlnetScores, torch256Scores),
            ["torchBatch256OneThread"] = MaxAbsDiff(mlnetScores, torchOneThreadScores),
            ["torchBatchAll"] = MaxAbsDiff(mlnetScores, torchAllScores),
            ["ortBatch256"] = MaxAbsDiff(mlnetScores, ort256Scores),
            ["ortBatch1"] = MaxAbsDiff(mlnetScores, ort1Scores),
        };
        double accuracy = Accuracy(mlnetScores, labels);

        var results = new[] { mlnet, torch256, torchOneThread, torchAll, ort256, ort1 };
        Console.WriteLine($"Batch scoring of {Harness.FormatCount(rowCount)} rows (median of {Repetitions} runs after {Warmups} warm-up):");
        Harness.ThroughputTable(results, mlnet, "ML.NET batch scoring").Print(Console.Out);
        Console.WriteLine("ratio: ML.NET batch scoring's time per row over the method's; above 1 is faster.");
        Harness.WarnIfNoisy(Console.Out, results);
        Console.WriteLine();
        Console.WriteLine($"PredictionEngine (loaded model) single-row latency over {Harness.FormatCount(LatencyPredictions)} predictions "
            + $"after {LatencyWarmups} warm-up: median {latency.MedianMs * 1000:F1} µs, p99 {latency.P99Ms * 1000:F1} µs "
            + $"(≈ {1000 / latency.MedianMs:N0} rows/s on one thread).");
        Console.WriteLine();
        Console.WriteLine("Agreement with the ML.NET scores (max |Δ probability|): "
            + string.Join(", ", agreement.Select(kv => $"{kv.Key} {(double)kv.Value!:E1}")));
        Console.WriteLine($"Test accuracy of the model (ML.NET scores): {accuracy:P2}. Whole run: {total.Elapsed.TotalSeconds:F0} s.");

        if (jsonPath is not null)
        {
            var report = new BenchmarkReport
            {
                Benchmark = "scoring",
                Machine = machine,
                Baseline = mlnet.Name,
                Parameters = new()
                {
                    ["rows"] = rowCount,
                    ["testSplitRows"] = testRows,
                    ["rowsRepeated"] = testRows < rowCount,
                    ["dataDirectory"] = source.Directory,
                    ["isSubset"] = source.IsSubset,
                    ["hiddenLayers"] = Hidden,
                    ["epochs"] = Epochs,
                    ["trainBatchSize"] = TrainBatchSize,
                    ["seed"] = Seed,
                    ["warmups"] = Warmups,
                    ["repetitions"] = Repetitions,
                },
                Results = results.Select(m => Harness.Entry(m, mlnet, new Dictionary<string, object?>
                {
                    ["msPer10k"] = Math.Round(m.MsPer(10_000), 3),
                })).ToList(),
                Extra = new()
                {
                    ["predictionEngineLatency"] = new Dictionary<string, object?>
                    {
                        ["warmups"] = LatencyWarmups,
                        ["predictions"] = LatencyPredictions,
                        ["medianMicroseconds"] = Math.Round(latency.MedianMs * 1000, 2),
                        ["p99Microseconds"] = Math.Round(latency.P99Ms * 1000, 2),
                        ["meanMicroseconds"] = Math.Round(latency.MeanMs * 1000, 2),
                    },
                    ["maxAbsDiffVsMlNet"] = agreement,
                    ["testAccuracy"] = Math.Round(accuracy, 4),
                    ["trainSeconds"] = Math.Round(trainSeconds, 2),
                    ["totalSeconds"] = Math.Round(total.Elapsed.TotalSeconds, 2),
                },
                Notes = notes,
            };
            Harness.WriteJson(jsonPath, report);
        }
        return 0;
    }

    /// <summary>
    /// Trains the model. Training is set-up, not a measurement: one torch thread keeps it short when other processes
    /// share the cores (two threads took minutes instead of seconds on a busy 2-core machine).
    /// </summary>
    private static HazyPredictionTransformer Train(MLContext ml, IDataView train)
    {
        int threads = get_num_threads();
        set_num_threads(1);
        try
        {
            return ml.MulticlassClassification.Trainers.HazyMlp(new MlpTrainer.Options
            {
                HiddenLayers = Hidden,
                NumberOfEpochs = Epochs,
                BatchSize = TrainBatchSize,
                Seed = Seed,
            }).Fit(train);
        }
        finally
        {
            set_num_threads(threads);
        }
    }

    /// <summary>The test split's features and labels as arrays, repeated or cut to <paramref name="rowCount"/> rows.</summary>
    private static (float[][] Features, uint[] Labels, int SourceRows) Materialize(IDataView test, int rowCount)
    {
        var features = new List<float[]>();
        var labels = new List<uint>();
        var featureColumn = test.Schema["Features"];
        var labelColumn = test.Schema["Label"];
        using (var cursor = test.GetRowCursor(new[] { featureColumn, labelColumn }))
        {
            var getFeatures = cursor.GetGetter<VBuffer<float>>(featureColumn);
            var getLabel = cursor.GetGetter<uint>(labelColumn);
            VBuffer<float> buffer = default;
            uint label = 0;
            while (features.Count < rowCount && cursor.MoveNext())
            {
                getFeatures(ref buffer);
                getLabel(ref label);
                features.Add(buffer.DenseValues().ToArray());
                labels.Add(label);
            }
        }
        if (features.Count == 0)
            throw new InvalidOperationException("The Fashion-MNIST test split is empty.");
        int sourceRows = features.Count;
        var f = new float[rowCount][];
        var l = new uint[rowCount];
        for (int i = 0; i < rowCount; i++)
        {
            f[i] = features[i % sourceRows];
            l[i] = labels[i % sourceRows];
        }
        return (f, l, CountRows(test));
    }

    private static int CountRows(IDataView view) => (int)(view.GetRowCount() ?? view.GetColumn<uint>("Label").LongCount());

    private static void ScoreWithMlNet(ITransformer model, IDataView data, float[] scores)
    {
        var scored = model.Transform(data);
        var column = scored.Schema["Score"];
        using var cursor = scored.GetRowCursor(new[] { column });
        var getter = cursor.GetGetter<VBuffer<float>>(column);
        VBuffer<float> buffer = default;
        int row = 0;
        while (cursor.MoveNext())
        {
            getter(ref buffer);
            buffer.GetValues().CopyTo(scores.AsSpan(row++ * Classes, Classes));
        }
    }

    private static void ScoreWithTorch(nn.Module<Tensor, Tensor> network, float[][] rows, int batchSize, float[] scores)
    {
        var full = new float[batchSize * FeatureSize];
        using var _ = no_grad();
        for (int start = 0; start < rows.Length; start += batchSize)
        {
            using var scope = NewDisposeScope();
            int count = Math.Min(batchSize, rows.Length - start);
            var buffer = count == batchSize ? full : new float[count * FeatureSize];
            for (int i = 0; i < count; i++)
                rows[start + i].CopyTo(buffer, i * FeatureSize);
            var x = tensor(buffer, new long[] { count, FeatureSize });
            var probabilities = nn.functional.softmax(network.forward(x), 1);
            probabilities.data<float>().CopyTo(scores.AsSpan(start * Classes, count * Classes));
        }
    }

    private static void ScoreWithOrt(InferenceSession session, float[][] rows, int batchSize, float[] scores)
    {
        string[] inputNames = [DefaultColumnNames.Features];
        string[] outputNames = [DefaultColumnNames.Score];
        using var runOptions = new RunOptions();
        var full = new float[batchSize * FeatureSize];
        for (int start = 0; start < rows.Length; start += batchSize)
        {
            int count = Math.Min(batchSize, rows.Length - start);
            var buffer = count == batchSize ? full : new float[count * FeatureSize];
            for (int i = 0; i < count; i++)
                rows[start + i].CopyTo(buffer, i * FeatureSize);
            using var input = OrtValue.CreateTensorValueFromMemory(buffer, new long[] { count, FeatureSize });
            using var outputs = session.Run(runOptions, inputNames, new[] { input }, outputNames);
            outputs[0].GetTensorDataAsSpan<float>().CopyTo(scores.AsSpan(start * Classes, count * Classes));
        }
    }

    private static double MaxAbsDiff(float[] a, float[] b)
    {
        double max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    private static double Accuracy(float[] scores, uint[] labels)
    {
        int correct = 0;
        for (int row = 0; row < labels.Length; row++)
        {
            var s = scores.AsSpan(row * Classes, Classes);
            int best = 0;
            for (int c = 1; c < Classes; c++)
            {
                if (s[c] > s[best])
                    best = c;
            }
            if (best + 1 == labels[row])
                correct++;
        }
        return (double)correct / labels.Length;
    }
}
