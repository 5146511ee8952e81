namespace Microsoft.ML.Hazy.Data;

/// <summary>ML.NET's default column names (ML.NET keeps its own constants internal).</summary>
public static class DefaultColumnNames
{
    /// <summary>"Label".</summary>
    public const string Label = "Label";
    /// <summary>"Features".</summary>
    public const string Features = "Features";
    /// <summary>"Score".</summary>
    public const string Score = "Score";
    /// <summary>"Probability".</summary>
    public const string Probability = "Probability";
    /// <summary>"PredictedLabel".</summary>
    public const string PredictedLabel = "PredictedLabel";
    /// <summary>"Embedding": the vector column an embedding model writes.</summary>
    public const string Embedding = "Embedding";
}
