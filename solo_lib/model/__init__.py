"""The SOLOv2 network (notebooks 05 and 06): backbone, FPN, head, mask feature, dynamic conv."""
