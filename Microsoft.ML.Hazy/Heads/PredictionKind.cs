namespace Microsoft.ML.Hazy.Heads;

/// <summary>The prediction tasks Hazy trainers solve; it names the output head, which fixes the output columns.</summary>
public enum PredictionKind
{
    /// <summary>Outputs <c>Score</c> (Single).</summary>
    Regression,
    /// <summary>Outputs <c>Score</c> (the logit), <c>Probability</c> and <c>PredictedLabel</c> (Boolean).</summary>
    BinaryClassification,
    /// <summary>Outputs <c>Score</c> (class probabilities) and <c>PredictedLabel</c> (key with the label's values).</summary>
    MulticlassClassification,
    /// <summary>Outputs an embedding column (a vector of Single of the model's size, <c>Embedding</c> by default); reads no label when scoring.</summary>
    Embedding,
}
