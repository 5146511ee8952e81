using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Sequence.Attention;
using Microsoft.ML.Hazy.Sequence.S4D;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Sequence;

internal sealed partial class SequenceNetwork : IPersistableNetwork
{
    /// <summary>The recipe kind of sequence networks (S4D or Transformer backbone, dense or Monarch projections).</summary>
    public const string RecipeKind = "Sequence";

    /// <inheritdoc/>
    /// <remarks>Written when the network is built, so later changes to the options it was built from do not alter it.</remarks>
    public NetworkRecipe? Recipe { get; }

    /// <summary>A network of the architecture <paramref name="recipe"/> describes, with fresh weights.</summary>
    public static SequenceNetwork FromRecipe(NetworkRecipe recipe)
    {
        var r = recipe.Read<SequenceRecipe>();
        var backbone = SequenceBackbones.Create(new SequenceTrainer.Options
        {
            Backbone = r.Backbone,
            S4D = r.S4D ?? new S4DOptions(),
            Transformer = r.Transformer ?? new TransformerOptions(),
        });
        return new SequenceNetwork(r.Channels, r.Outputs, r.Layers, new SequenceNetworkShape(r.Width, r.Dropout, r.Bidirectional, r.MonarchBlocks),
            r.Normalization, r.PreNorm, backbone, new SequenceInputTreatment(r.NormalizeSeries, r.Pooling));
    }

    private static NetworkRecipe? Describe(int channels, int outputs, int layers, SequenceNetworkShape shape, SequenceNormalization normalization, bool preNorm,
        ISequenceBackboneFactory backbone, SequenceInputTreatment treatment)
    {
        (SequenceBackbone Kind, S4DOptions? S4D, TransformerOptions? Transformer)? described = backbone switch
        {
            S4DBackbone b => (SequenceBackbone.S4D, b.Options, null),
            TransformerBackbone b => (SequenceBackbone.Transformer, null, b.Options),
            _ => null,
        };
        return described is { } d
            ? NetworkRecipe.Of(RecipeKind, new SequenceRecipe(channels, outputs, layers, shape.Width, shape.Dropout, shape.Bidirectional, shape.MonarchBlocks,
                normalization, preNorm, d.Kind, d.S4D, d.Transformer, treatment.NormalizeSeries, treatment.Pooling))
            : null;
    }

    private sealed record SequenceRecipe(int Channels, int Outputs, int Layers, int Width, double Dropout, bool Bidirectional, int MonarchBlocks,
        SequenceNormalization Normalization, bool PreNorm, SequenceBackbone Backbone, S4DOptions? S4D, TransformerOptions? Transformer,
        bool NormalizeSeries = false, SequencePooling Pooling = SequencePooling.Mean);
}
