using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Sequence.S4D;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Sequence;

/// <summary>
/// Synthetic two-channel waves: class c oscillates at c + 1 cycles per sequence with a random phase, both
/// channels scaled by an amplitude in [0.5, 2] (the regression target), plus noise.
/// </summary>
internal static class Waves
{
    public const int Length = 16;
    public const int Channels = 2;

    public sealed class Row
    {
        public string Class = "";
        public bool IsPositive;
        public float Target;
        [VectorType(Length * Channels)]
        public float[] Features = Array.Empty<float>();
    }

    public sealed class VariableRow
    {
        public string Class = "";
        public float[] Features = Array.Empty<float>();
    }

    private static readonly string[] Names = { "low", "mid", "high", "top" };

    public static float[] Series(Random rand, int cls, int length, float amplitude)
    {
        double phase = rand.NextDouble() * 2 * Math.PI;
        var x = new float[length * Channels];
        for (int t = 0; t < length; t++)
        {
            double angle = 2 * Math.PI * (cls + 1) * t / 16.0 + phase;
            x[t * Channels] = (float)(amplitude * Math.Sin(angle) + 0.2 * (rand.NextDouble() - 0.5));
            x[t * Channels + 1] = (float)(amplitude * Math.Cos(angle) + 0.2 * (rand.NextDouble() - 0.5));
        }
        return x;
    }

    public static Row[] Make(int rows, int seed, int classes = 3)
    {
        var rand = new Random(seed);
        return Enumerable.Range(0, rows).Select(i =>
        {
            int c = i % classes;
            float amplitude = (float)(0.5 + 1.5 * rand.NextDouble());
            return new Row { Class = Names[c], IsPositive = c == 0, Target = amplitude, Features = Series(rand, c, Length, amplitude) };
        }).ToArray();
    }

    public static VariableRow[] MakeVariable(int rows, int seed, int minLength = 6, int maxLength = 20)
    {
        var rand = new Random(seed);
        return Enumerable.Range(0, rows).Select(i =>
        {
            int c = i % 3;
            return new VariableRow { Class = Names[c], Features = Series(rand, c, rand.Next(minLength, maxLength + 1), 1f) };
        }).ToArray();
    }

    public static IDataView Keyed<T>(MLContext ml, IEnumerable<T> rows) where T : class
    {
        var data = ml.Data.LoadFromEnumerable(rows);
        return ml.Transforms.Conversion.MapValueToKey("Label", "Class").Fit(data).Transform(data);
    }

    public static IDataView WithLabel(MLContext ml, IEnumerable<Row> rows, string source)
    {
        var data = ml.Data.LoadFromEnumerable(rows);
        return ml.Transforms.CopyColumns("Label", source).Fit(data).Transform(data);
    }

    /// <summary>
    /// Runs the model's batched ONNX export on <paramref name="test"/>'s rows padded to the longest, with each row's step
    /// count, in ONNX Runtime, and checks its three class scores against <paramref name="torchScores"/>.
    /// </summary>
    public static void AssertBatchedExportMatches(HazyPredictionTransformer model, IDataView test, float[][] torchScores)
    {
        var rows = test.GetColumn<float[]>("Features").ToArray();
        int longest = rows.Max(r => r.Length);
        var flat = new float[rows.Length * longest];
        for (int i = 0; i < rows.Length; i++)
            rows[i].CopyTo(flat, i * longest);
        var steps = rows.Select(r => (long)(r.Length / Channels)).ToArray();
        using var stream = new MemoryStream();
        model.SaveAsOnnx(stream);
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(stream.ToArray());
        using var results = session.Run(new[]
        {
            Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor("Features", new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(flat, new[] { rows.Length, longest })),
            Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor("Steps", new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<long>(steps, new[] { rows.Length })),
        });
        var batched = results.First(r => r.Name == "Score").AsTensor<float>();
        for (int i = 0; i < rows.Length; i++)
            ConformanceHelpers.AssertClose(Enumerable.Range(0, 3).Select(j => batched[i, j]).ToArray(), torchScores[i], 1e-4, $"batched row {i}");
    }

    /// <summary>A small, fast S4D configuration for CI.</summary>
    public static SequenceTrainer.Options SmallOptions(bool bidirectional = false) => new()
    {
        Channels = Channels,
        ModelDimension = 8,
        NumberOfLayers = 2,
        NumberOfEpochs = 3,
        BatchSize = 32,
        LearningRate = 1e-2,
        DropoutRate = 0.1,
        Bidirectional = bidirectional,
        S4D = new S4DOptions { StateSize = 8 },
    };
}

[TestFixture]
public sealed class S4DMulticlassConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.MulticlassClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.MulticlassClassification.Trainers.HazyS4D(Waves.SmallOptions());

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) => Waves.Keyed(ml, Waves.Make(rows, seed));

    protected override IDataView CreateSingleClassData(MLContext ml) => Waves.Keyed(ml, Waves.Make(30, 1, classes: 1));
}

[TestFixture]
public sealed class S4DBinaryConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.BinaryClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml)
    {
        var options = Waves.SmallOptions(bidirectional: true);
        options.Normalization = SequenceNormalization.BatchNorm;
        options.PreNorm = true;
        options.S4D.Initialization = S4DInitialization.LegS;
        return ml.Hazy().BinaryClassification.S4D(options);
    }

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) =>
        Waves.WithLabel(ml, Waves.Make(rows, seed), nameof(Waves.Row.IsPositive));

    protected override IDataView CreateSingleClassData(MLContext ml) =>
        Waves.WithLabel(ml, Waves.Make(30, 1).Select(r => { r.IsPositive = true; return r; }), nameof(Waves.Row.IsPositive));
}

[TestFixture]
public sealed class S4DRegressionConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.Regression;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml)
    {
        var options = Waves.SmallOptions();
        options.S4D.Discretization = S4DDiscretization.Bilinear;
        options.S4D.Initialization = S4DInitialization.Inv;
        return ml.Regression.Trainers.HazySequence(options);
    }

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) =>
        Waves.WithLabel(ml, Waves.Make(rows, seed), nameof(Waves.Row.Target));

    protected override IDataView CreateSingleClassData(MLContext ml) => throw new NotSupportedException();
}
