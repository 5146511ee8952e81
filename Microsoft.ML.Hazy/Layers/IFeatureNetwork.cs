using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Layers;

/// <summary>
/// A network whose forward is a feature extractor followed by a head, so a training penalty can compare the features
/// (the pooled representation) of two views of a batch. Networks that are <see cref="ILayeredNetwork"/> need not implement
/// it: their features are the input of their last layer.
/// </summary>
internal interface IFeatureNetwork
{
    /// <summary>The features the head reads, [B, F], of <paramref name="input"/> (with each row's length for a sequence network).</summary>
    Tensor Features(Tensor input, Tensor? lengths);

    /// <summary>The network's output from <paramref name="features"/>: <c>forward(x) = Head(Features(x))</c>.</summary>
    Tensor Head(Tensor features);
}
