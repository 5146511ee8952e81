namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>
/// Scores rows of features in batches. It is all that model-agnostic attribution (occlusion, KernelSHAP)
/// and the faithfulness test need of a model, so they work on any ML.NET transformer as well as on a
/// TorchSharp network.
/// </summary>
public interface IScoreFunction
{
    /// <summary>Values per row.</summary>
    int FeatureSize { get; }

    /// <summary>Scores per row: the number of classes, or 1 for a regressor or a binary classifier's margin.</summary>
    int OutputCount { get; }

    /// <summary>Scores <paramref name="count"/> rows laid out row-major in <paramref name="rows"/> (count × <see cref="FeatureSize"/>).</summary>
    /// <returns>count × <see cref="OutputCount"/> scores, row-major.</returns>
    float[] Score(ReadOnlySpan<float> rows, int count);
}

/// <summary>An attribution method: one value per feature saying how much it contributed to the target output.</summary>
public interface IAttributionMethod
{
    /// <summary>The method's name as reports print it.</summary>
    string Name { get; }

    /// <summary>Values per row.</summary>
    int FeatureSize { get; }

    /// <summary>
    /// Attributes the output <paramref name="targets"/>[i] of row i, for <paramref name="count"/> rows laid out
    /// row-major in <paramref name="features"/>.
    /// </summary>
    /// <returns>count × <see cref="FeatureSize"/> attributions, row-major, in the features' layout.</returns>
    float[] Attribute(ReadOnlySpan<float> features, int count, ReadOnlySpan<int> targets);
}

/// <summary>Which output an attribution explains.</summary>
public enum AttributionTarget
{
    /// <summary>The row's true label (the paper's choice); needs a key label column.</summary>
    TrueLabel,

    /// <summary>The class the model predicts.</summary>
    PredictedLabel,

    /// <summary>One fixed class index for every row.</summary>
    FixedClass,
}
