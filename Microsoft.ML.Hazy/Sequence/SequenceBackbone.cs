using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Sequence.S4D;

namespace Microsoft.ML.Hazy.Sequence;

/// <summary>The layer types a <see cref="SequenceTrainer"/> can stack between its encoder and its pooled decoder.</summary>
public enum SequenceBackbone
{
    /// <summary>S4D diagonal state-space layers (<see cref="SequenceTrainer.Options.S4D"/>), O(L log L) in the length.</summary>
    S4D,

    /// <summary>Transformer blocks (<see cref="SequenceTrainer.Options.Transformer"/>): FlashAttention with rotary positions, then a feed-forward layer.</summary>
    Transformer,
}

/// <summary>The one place that maps a <see cref="SequenceBackbone"/> to its factory.</summary>
internal static class SequenceBackbones
{
    public static ISequenceBackboneFactory Create(SequenceTrainer.Options options) => options.Backbone switch
    {
        SequenceBackbone.S4D => new S4DBackbone(options.S4D ?? throw new ArgumentNullException(nameof(options), "SequenceTrainer.Options.S4D must not be null for the S4D backbone.")),
        SequenceBackbone.Transformer => new Attention.TransformerBackbone(options.Transformer ?? throw new ArgumentNullException(nameof(options), "SequenceTrainer.Options.Transformer must not be null for the Transformer backbone.")),
        _ => throw new ArgumentOutOfRangeException(nameof(options), options.Backbone, "Unknown SequenceTrainer.Options.Backbone."),
    };
}
