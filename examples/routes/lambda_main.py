"""Additional routes: besides /main, this lambda serves a small in-memory item store at /items
and /items/<item_id> (through the platform: /1/lambdas/{id}/proxy/items/...)."""

from luna_lambda_tools.public.standalone.standalone_request import StandaloneLambdaRequest
from luna_lambda_tools.public.user_handlers.base_handler import LambdaUserHandler

ITEMS: dict[int, dict] = {}


class Items(LambdaUserHandler):
    route = "/items"

    async def get(self):
        page, page_size = self.getPagination(defaultPageSize=10)
        ids = sorted(ITEMS)[(page - 1) * page_size : page * page_size]
        return self.success(json={"items": [ITEMS[i] for i in ids], "count": len(ITEMS)})

    async def post(self):
        data = self.request.json
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return self.error(400, "expected a JSON object with a string 'name'")
        item_id = max(ITEMS, default=0) + 1
        ITEMS[item_id] = {"id": item_id, "name": data["name"], "account": self.getAccountIdFromHeader()}
        return self.success(201, json=ITEMS[item_id], headers={"Location": f"/items/{item_id}"})


class Item(LambdaUserHandler):
    route = "/items/<item_id:int>"

    async def get(self, item_id: int):
        # A required query parameter: `?fields=name,id`; without it the answer is 400.
        fields = self.getQueryParam("fields", validator=lambda v: [f for f in v.split(",") if f], require=True)
        item = ITEMS.get(item_id)
        if item is None:
            return self.error(404, f"no item {item_id}")
        return self.success(json={k: item[k] for k in fields if k in item})

    async def delete(self, item_id: int):
        if ITEMS.pop(item_id, None) is None:
            return self.error(404, f"no item {item_id}")
        return self.sendResponse(204)


async def main(request: StandaloneLambdaRequest) -> dict:
    return {"items": len(ITEMS), "routes": ["/items", "/items/<item_id:int>"]}
