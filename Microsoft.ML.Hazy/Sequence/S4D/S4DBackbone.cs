using Microsoft.ML.Hazy.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence.S4D;

/// <summary>The S4D backbone: one <see cref="S4DLayer"/> per block, its state-space parameters in their own optimizer group.</summary>
internal sealed class S4DBackbone : ISequenceBackboneFactory
{
    private readonly S4DOptions _options;

    public S4DBackbone(S4DOptions options)
    {
        options.Validate();
        _options = options;
        LayerParameterGroups = options.SsmLearningRate > 0
            ? new[] { new ParameterGroupOptions { NamePrefix = "ssm.", LearningRate = options.SsmLearningRate, WeightDecay = options.SsmWeightDecay } }
            : Array.Empty<ParameterGroupOptions>();
    }

    public IReadOnlyList<ParameterGroupOptions> LayerParameterGroups { get; }

    public IReadOnlyList<nn.Module<Tensor, Tensor>> CreateLayers(int index, SequenceNetworkShape shape)
    {
        var layer = new S4DLayer(shape.Width, _options, shape.Dropout, shape.Bidirectional, shape.MonarchBlocks);
        if (_options.SsmLearningRate == 0)
        {
            foreach (var p in layer.StateSpace.parameters())
                p.requires_grad = false;
        }
        return new[] { layer };
    }
}
