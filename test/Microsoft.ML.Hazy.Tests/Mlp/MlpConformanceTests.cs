using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Mlp;

/// <summary>Synthetic blobs: class c is centred at 2·e_c in 8 dimensions, with unit noise.</summary>
internal static class Blobs
{
    public const int Dimensions = 8;

    public sealed class Row
    {
        public string Class = "";
        public bool IsPositive;
        public float Target;
        [VectorType(Dimensions)]
        public float[] Features = Array.Empty<float>();
    }

    public static Row[] Make(int rows, int seed, int classes = 3)
    {
        var rand = new Random(seed);
        string[] names = { "cat", "dog", "bird", "fish" };
        return Enumerable.Range(0, rows).Select(i =>
        {
            int c = i % classes;
            var x = Enumerable.Range(0, Dimensions).Select(j => (float)(rand.NextDouble() * 2 - 1 + (j == c ? 2 : 0))).ToArray();
            return new Row { Class = names[c], IsPositive = c == 0, Target = 3 * x[0] - 2 * x[1] + 0.5f, Features = x };
        }).ToArray();
    }

    public static IDataView Keyed(MLContext ml, IEnumerable<Row> rows) =>
        ml.Transforms.Conversion.MapValueToKey("Label", nameof(Row.Class)).Fit(ml.Data.LoadFromEnumerable(rows)).Transform(ml.Data.LoadFromEnumerable(rows));

    public static IDataView WithLabel(MLContext ml, IEnumerable<Row> rows, string source) =>
        ml.Transforms.CopyColumns("Label", source).Fit(ml.Data.LoadFromEnumerable(rows)).Transform(ml.Data.LoadFromEnumerable(rows));

    public static MlpTrainer.Options SmallOptions() => new()
    {
        HiddenLayers = new[] { 16 },
        NumberOfEpochs = 4,
        BatchSize = 16,
        LearningRate = 1e-2,
        Activation = MlpActivation.Gelu,
        LayerNorm = true,
    };
}

[TestFixture]
public sealed class MlpMulticlassConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.MulticlassClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.MulticlassClassification.Trainers.HazyMlp(Blobs.SmallOptions());

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) => Blobs.Keyed(ml, Blobs.Make(rows, seed));

    protected override IDataView CreateSingleClassData(MLContext ml) => Blobs.Keyed(ml, Blobs.Make(30, 1, classes: 1));
}

[TestFixture]
public sealed class MlpBinaryConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.BinaryClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.Hazy().BinaryClassification.Mlp(Blobs.SmallOptions());

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) =>
        Blobs.WithLabel(ml, Blobs.Make(rows, seed), nameof(Blobs.Row.IsPositive));

    protected override IDataView CreateSingleClassData(MLContext ml) =>
        Blobs.WithLabel(ml, Blobs.Make(30, 1).Select(r => { r.IsPositive = true; return r; }), nameof(Blobs.Row.IsPositive));
}

[TestFixture]
public sealed class MlpRegressionConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.Regression;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.Regression.Trainers.HazyMlp(Blobs.SmallOptions());

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) =>
        Blobs.WithLabel(ml, Blobs.Make(rows, seed), nameof(Blobs.Row.Target));

    protected override IDataView CreateSingleClassData(MLContext ml) => throw new NotSupportedException();
}
