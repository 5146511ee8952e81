using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Robustness;
using Microsoft.ML.Hazy.Tests.Cnn;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Robustness;

/// <summary>
/// The trainer conformance suite for a CNN trained with a GradMask penalty: the training data carries a mask column (the
/// left half of each image, missing on every fourth row); the model must behave as any trainer's.
/// </summary>
[TestFixture]
public sealed class CnnGradMaskConformanceTests : TrainerConformanceTests
{
    private const int Size = BlobImages.Channels * BlobImages.Height * BlobImages.Width;

    private sealed class MaskRow
    {
        [VectorType(Size)] public float[] Mask = [];
        public bool HasMask;
    }

    private sealed class Index
    {
        public float Target = 0f;
    }

    protected override PredictionKind Kind => PredictionKind.MulticlassClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml)
    {
        var options = BlobImages.SmallOptions();
        options.Penalty = new MaskPenaltyOptions { Kind = MaskPenaltyKind.GradMask, Weight = 1e-3, HasMaskColumnName = nameof(MaskRow.HasMask) };
        return ml.MulticlassClassification.Trainers.HazyCnn(options);
    }

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) => WithMask(ml, BlobImages.Keyed(ml, BlobImages.Make(rows, seed)));

    protected override IDataView CreateSingleClassData(MLContext ml) => WithMask(ml, BlobImages.Keyed(ml, BlobImages.Make(30, 1, classes: 1)));

    /// <summary>Adds the mask (1 on the left half of every image row, each channel) and a has-mask flag, false on about a quarter of the rows (set by the target).</summary>
    private static IDataView WithMask(MLContext ml, IDataView data)
    {
        var mask = Enumerable.Range(0, Size).Select(i => i % BlobImages.Width < BlobImages.Width / 2 ? 1f : 0f).ToArray();
        var mapping = ml.Transforms.CustomMapping<Index, MaskRow>((input, output) =>
        {
            output.Mask = mask;
            output.HasMask = (int)(input.Target * 1000) % 4 != 0;
        }, contractName: null);
        return mapping.Fit(data).Transform(data);
    }
}
