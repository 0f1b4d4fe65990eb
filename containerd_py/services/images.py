"""containerd.services.images.v1.Images: names pointing at manifests. A delete runs the
collector before it returns, so `ctr images rm` leaves no blob or snapshot behind."""

from google.protobuf import empty_pb2

from containerd_py.api.events import image_pb2 as events
from containerd_py.api.services.images.v1 import images_pb2 as api
from containerd_py.exchange import Exchange
from containerd_py.metadata.gc import Collector
from containerd_py.metadata.images import Image, Images
from containerd_py.rpc import Call
from containerd_py.services.convert import descriptor_from_proto, descriptor_to_proto, timestamp


def image_to_proto(image: Image) -> api.Image:
    return api.Image(
        name=image.name,
        labels=image.labels,
        target=descriptor_to_proto(image.target),
        created_at=timestamp(image.created_at),
        updated_at=timestamp(image.updated_at),
    )


def image_from_proto(image: api.Image) -> Image:
    return Image(image.name, descriptor_from_proto(image.target), dict(image.labels))


class ImagesService:
    def __init__(self, images: Images, exchange: Exchange, collector: Collector) -> None:
        self.images = images
        self.exchange = exchange
        self.collector = collector

    def Get(self, request: api.GetImageRequest, call: Call) -> api.GetImageResponse:
        return api.GetImageResponse(
            image=image_to_proto(self.images.get(call.namespace, request.name))
        )

    def List(self, request: api.ListImagesRequest, call: Call) -> api.ListImagesResponse:
        found = self.images.list(call.namespace, list(request.filters))
        return api.ListImagesResponse(images=[image_to_proto(i) for i in found])

    def Create(self, request: api.CreateImageRequest, call: Call) -> api.CreateImageResponse:
        ns = call.namespace
        image = self.images.create(ns, image_from_proto(request.image))
        self.exchange.publish(
            ns, "/images/create", events.ImageCreate(name=image.name, labels=image.labels)
        )
        return api.CreateImageResponse(image=image_to_proto(image))

    def Update(self, request: api.UpdateImageRequest, call: Call) -> api.UpdateImageResponse:
        ns = call.namespace
        paths = list(request.update_mask.paths)
        image = self.images.update(ns, image_from_proto(request.image), paths)
        self.exchange.publish(
            ns, "/images/update", events.ImageUpdate(name=image.name, labels=image.labels)
        )
        return api.UpdateImageResponse(image=image_to_proto(image))

    def Delete(self, request: api.DeleteImageRequest, call: Call) -> empty_pb2.Empty:
        ns = call.namespace
        self.images.delete(ns, request.name)
        self.exchange.publish(ns, "/images/delete", events.ImageDelete(name=request.name))
        # Always synchronous: containerd collects later unless asked (`sync`); a workshop
        # wants to see the blobs go when the image does.
        self.collector.collect()
        return empty_pb2.Empty()
