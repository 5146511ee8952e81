using System.ComponentModel;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;

namespace Microsoft.ML.Hazy.Onnx;

// ML.NET's OnnxTransformer turns every ONNX tensor output into a vector column (a 0-d tensor fails when
// read), so scalar columns such as a regression Score leave the graph as 1-element vectors. These
// mappings unwrap them. They are registered CustomMapping contracts, so a saved model loads with plain
// mlContext.Model.Load wherever the Microsoft.ML.Hazy assembly can be resolved.

/// <summary>Internal plumbing of saved Hazy models: one-element ONNX outputs of a regression model.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class RegressionOnnxOutput
{
    /// <summary>The score as a one-element vector.</summary>
    [ColumnName(ScalarColumns.ScoreVector), VectorType(1)]
    public float[] Score = Array.Empty<float>();
}

/// <summary>Internal plumbing of saved Hazy models: the scalar columns of a regression model.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class RegressionScalars
{
    /// <summary>The predicted value.</summary>
    public float Score;
}

/// <summary>Internal plumbing of saved Hazy models: one-element ONNX outputs of a binary classifier.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class BinaryOnnxOutput
{
    /// <summary>The logit as a one-element vector.</summary>
    [ColumnName(ScalarColumns.ScoreVector), VectorType(1)]
    public float[] Score = Array.Empty<float>();

    /// <summary>The probability as a one-element vector.</summary>
    [ColumnName(ScalarColumns.ProbabilityVector), VectorType(1)]
    public float[] Probability = Array.Empty<float>();

    /// <summary>The predicted label as a one-element vector.</summary>
    [ColumnName(ScalarColumns.PredictedVector), VectorType(1)]
    public bool[] PredictedLabel = Array.Empty<bool>();
}

/// <summary>Internal plumbing of saved Hazy models: the scalar columns of a binary classifier.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class BinaryScalars
{
    /// <summary>The logit.</summary>
    public float Score;

    /// <summary>The probability of the positive class.</summary>
    public float Probability;

    /// <summary>True for the positive class.</summary>
    public bool PredictedLabel;
}

/// <summary>Internal plumbing of saved Hazy models: the predicted class index as a one-element vector.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class ClassIndexOnnxOutput
{
    /// <summary>Zero-based class index.</summary>
    [ColumnName(ScalarColumns.PredictedVector), VectorType(1)]
    public long[] Index = Array.Empty<long>();
}

/// <summary>Internal plumbing of saved Hazy models: the predicted class index.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class ClassIndexScalar
{
    /// <summary>Zero-based class index.</summary>
    [ColumnName(ScalarColumns.PredictedIndex)]
    public long Index;
}

/// <summary>Internal plumbing of saved Hazy models: unwraps a regression model's ONNX outputs.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute(ScalarColumns.RegressionContract)]
public sealed class RegressionScalarsFactory : CustomMappingFactory<RegressionOnnxOutput, RegressionScalars>
{
    /// <inheritdoc/>
    public override Action<RegressionOnnxOutput, RegressionScalars> GetMapping() => ScalarColumns.Regression;
}

/// <summary>Internal plumbing of saved Hazy models: unwraps a binary classifier's ONNX outputs.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute(ScalarColumns.BinaryContract)]
public sealed class BinaryScalarsFactory : CustomMappingFactory<BinaryOnnxOutput, BinaryScalars>
{
    /// <inheritdoc/>
    public override Action<BinaryOnnxOutput, BinaryScalars> GetMapping() => ScalarColumns.Binary;
}

/// <summary>Internal plumbing of saved Hazy models: unwraps a multiclass classifier's predicted index.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute(ScalarColumns.ClassIndexContract)]
public sealed class ClassIndexScalarFactory : CustomMappingFactory<ClassIndexOnnxOutput, ClassIndexScalar>
{
    /// <inheritdoc/>
    public override Action<ClassIndexOnnxOutput, ClassIndexScalar> GetMapping() => ScalarColumns.ClassIndex;
}

internal static class ScalarColumns
{
    public const string ScoreVector = "__HazyScoreVector";
    public const string ProbabilityVector = "__HazyProbabilityVector";
    public const string PredictedVector = "__HazyPredictedVector";
    public const string PredictedIndex = "__HazyPredictedIndex";

    public const string RegressionContract = "Microsoft.ML.Hazy.RegressionScalars.v1";
    public const string BinaryContract = "Microsoft.ML.Hazy.BinaryScalars.v1";
    public const string ClassIndexContract = "Microsoft.ML.Hazy.ClassIndexScalar.v1";

    public static void Regression(RegressionOnnxOutput src, RegressionScalars dst) => dst.Score = src.Score[0];

    public static void Binary(BinaryOnnxOutput src, BinaryScalars dst)
    {
        dst.Score = src.Score[0];
        dst.Probability = src.Probability[0];
        dst.PredictedLabel = src.PredictedLabel[0];
    }

    public static void ClassIndex(ClassIndexOnnxOutput src, ClassIndexScalar dst) => dst.Index = src.Index[0];
}
