using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Contrastive;

/// <summary>
/// "Thanos" embeddings (Chen et al., ICML 2022): two encoders trained on the same label, one with SupCon + class-conditional
/// InfoNCE and one as a class-conditional autoencoder, whose embeddings are concatenated. <c>Fit</c> trains both and returns
/// a chain of standard ML.NET transformers (the two embedding models, a concatenation, and a drop of the two parts), so the
/// result saves, loads and runs in a <c>PredictionEngine</c> like any ML.NET model.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Input column | Type |
/// | -- | -- |
/// | `Label` | key (training only) |
/// | `Features` | known-size vector of Single |
///
/// | Output column | Type |
/// | -- | -- |
/// | `Embedding` (the output column name) | vector of Single: the spread encoder's embedding followed by the autoencoder's |
/// ]]></format>
/// </remarks>
public sealed class ThanosEstimator : IEstimator<TransformerChain<ITransformer>>
{
    private readonly MLContext _ml;
    private readonly ContrastiveTrainer _spread;
    private readonly ContrastiveTrainer _autoencoder;
    private readonly string _output;
    private readonly string _spreadColumn;
    private readonly string _autoencoderColumn;

    internal ThanosEstimator(HazyEnvironment env, ContrastiveTrainer.Options spread, ContrastiveTrainer.Options autoencoder, string outputColumnName)
    {
        ArgumentNullException.ThrowIfNull(spread);
        ArgumentNullException.ThrowIfNull(autoencoder);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputColumnName);
        // The concatenation and the drop are stateless: any context builds the same transformers.
        _ml = env.Env as MLContext ?? new MLContext(seed: 0);
        _output = outputColumnName;
        _spreadColumn = outputColumnName + ".Spread";
        _autoencoderColumn = outputColumnName + ".Autoencoder";
        var s = (ContrastiveTrainer.Options)spread.ShallowCopy();
        s.OutputColumnName = _spreadColumn;
        var a = (ContrastiveTrainer.Options)autoencoder.ShallowCopy();
        a.OutputColumnName = _autoencoderColumn;
        _spread = new ContrastiveTrainer(env, s);
        _autoencoder = new ContrastiveTrainer(env, a);
    }

    private IEstimator<ITransformer> Combine() =>
        _ml.Transforms.Concatenate(_output, _spreadColumn, _autoencoderColumn)
            .Append(_ml.Transforms.DropColumns(_spreadColumn, _autoencoderColumn));

    /// <summary>Trains both encoders on <paramref name="input"/> and returns the chain that outputs their concatenated embeddings.</summary>
    /// <param name="input">The training data.</param>
    public TransformerChain<ITransformer> Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var spread = _spread.Fit(input);
        var autoencoder = _autoencoder.Fit(input);
        var both = autoencoder.Transform(spread.Transform(input));
        var combine = Combine().Fit(both);
        var parts = new List<ITransformer> { spread, autoencoder };
        parts.AddRange(combine);
        return new TransformerChain<ITransformer>(parts.ToArray());
    }

    /// <summary>The output schema: the input's columns and the concatenated embedding.</summary>
    /// <param name="inputSchema">The input schema.</param>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) =>
        Combine().GetOutputSchema(_autoencoder.GetOutputSchema(_spread.GetOutputSchema(inputSchema)));
}
