using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Cnn;

/// <summary>
/// Synthetic 2×6×8 images: a bright 2×2 blob whose channel and corner are set by the class (jittered by a pixel),
/// its brightness in [1, 2] (the regression target), plus noise. H ≠ W so a swapped layout would show.
/// </summary>
internal static class BlobImages
{
    public const int Channels = 2, Height = 6, Width = 8;

    public sealed class Row
    {
        public string Class = "";
        public bool IsPositive;
        public float Target;
        [VectorType(Channels * Height * Width)]
        public float[] Features = Array.Empty<float>();
    }

    private static readonly string[] Names = { "left", "right", "other" };

    public static Row[] Make(int rows, int seed, int classes = 3)
    {
        var rand = new Random(seed);
        return Enumerable.Range(0, rows).Select(i =>
        {
            int c = i % classes;
            var x = Enumerable.Range(0, Channels * Height * Width).Select(_ => (float)(0.6 * (rand.NextDouble() - 0.5))).ToArray();
            float brightness = (float)(1 + rand.NextDouble());
            int channel = c == 2 ? 1 : 0;
            int top = (c == 1 ? Height - 3 : 0) + rand.Next(2), left = (c == 1 ? Width - 3 : 0) + rand.Next(2);
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++)
                    x[(channel * Height + top + dy) * Width + left + dx] += brightness;
            return new Row { Class = Names[c], IsPositive = c == 0, Target = brightness, Features = x };
        }).ToArray();
    }

    public static IDataView Keyed(MLContext ml, IEnumerable<Row> rows) =>
        ml.Transforms.Conversion.MapValueToKey("Label", nameof(Row.Class)).Fit(ml.Data.LoadFromEnumerable(rows)).Transform(ml.Data.LoadFromEnumerable(rows));

    public static IDataView WithLabel(MLContext ml, IEnumerable<Row> rows, string source) =>
        ml.Transforms.CopyColumns("Label", source).Fit(ml.Data.LoadFromEnumerable(rows)).Transform(ml.Data.LoadFromEnumerable(rows));

    public static CnnTrainer.Options SmallOptions() => new()
    {
        Channels = Channels,
        Height = Height,
        Width = Width,
        Filters = new[] { 4, 8 },
        DropoutRate = 0.1,
        NumberOfEpochs = 4,
        BatchSize = 16,
        LearningRate = 1e-2,
    };
}

[TestFixture]
public sealed class CnnMulticlassConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.MulticlassClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.MulticlassClassification.Trainers.HazyCnn(BlobImages.SmallOptions());

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) => BlobImages.Keyed(ml, BlobImages.Make(rows, seed));

    protected override IDataView CreateSingleClassData(MLContext ml) => BlobImages.Keyed(ml, BlobImages.Make(30, 1, classes: 1));
}

[TestFixture]
public sealed class CnnBinaryConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.BinaryClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.BinaryClassification.Trainers.HazyCnn(BlobImages.SmallOptions());

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) =>
        BlobImages.WithLabel(ml, BlobImages.Make(rows, seed), nameof(BlobImages.Row.IsPositive));

    protected override IDataView CreateSingleClassData(MLContext ml) =>
        BlobImages.WithLabel(ml, BlobImages.Make(30, 1).Select(r => { r.IsPositive = true; return r; }), nameof(BlobImages.Row.IsPositive));
}

[TestFixture]
public sealed class CnnRegressionConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.Regression;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.Hazy().Regression.Cnn(BlobImages.SmallOptions());

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) =>
        BlobImages.WithLabel(ml, BlobImages.Make(rows, seed), nameof(BlobImages.Row.Target));

    protected override IDataView CreateSingleClassData(MLContext ml) => throw new NotSupportedException();
}
